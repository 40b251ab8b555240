"""A ComfyUI protocol double: a real HTTP + websocket server speaking ComfyUI 0.3.64's protocol
(as recorded from a real server in shared/comfyui/, and as its server.py / execution.py behave),
really computing a few model-free image nodes with Pillow. Tests use it in place of a GPU host;
`python -m scripts.comfyui_double --port 8188` runs it as the platform's SIMULATED GPU.

    with ComfyUIDouble(step_time=0.05, steps=4) as comfy:
        requests.post(comfy.url + "/prompt", json={"prompt": ..., "client_id": ...})
        comfy.wait_running(5)
"""

from .server import FEATURES, VERSION, ComfyUIDouble, main

__all__ = ["ComfyUIDouble", "FEATURES", "VERSION", "main"]
