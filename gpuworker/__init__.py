"""The GPU-host side of the workshop platform: an RQ worker next to one ComfyUI.

Never imports Django: the GPU host has only requirements-gpuworker.txt.
"""
