# ComfyUI for the GPU host, at the current release the platform supports: 0.38.1 (its
# frontend, comfyui-frontend-package 1.53.6, and workflow templates 0.11.66 are the versions the
# app pins in requirements.txt). Supported range: 0.8.0 (the first release with LTX-2, measured)
# to 0.38.x. Custom nodes come from docker/custom_nodes.txt, each pinned to a commit.
# torch comes from the PyTorch CUDA index; its wheels bring their own CUDA libraries, so the
# host needs only an NVIDIA driver for CUDA 12.8 and the NVIDIA Container Toolkit.
FROM nvidia/cuda:12.8.1-base-ubuntu24.04

ARG COMFYUI_VERSION=v0.38.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# torch is pinned so that two builds of one tag run the same kernels.
ARG TORCH_VERSION=2.8.0
ARG TORCHVISION_VERSION=0.23.0
ARG TORCHAUDIO_VERSION=2.8.0

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git python3 python3-venv python3-dev \
      build-essential libgl1 libglib2.0-0 ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

RUN git clone --depth 1 --branch ${COMFYUI_VERSION} https://github.com/comfyanonymous/ComfyUI.git /opt/comfyui
WORKDIR /opt/comfyui
RUN pip install --index-url ${TORCH_INDEX_URL} \
      torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION} torchaudio==${TORCHAUDIO_VERSION} \
 && pip install -r requirements.txt \
 # ComfyUI imports requests at start without declaring it.
 && pip install requests

# The custom-node manifest: "<git URL> <commit>" per line (none by default: the workshop's LTX-2
# templates use core nodes only).
COPY docker/custom_nodes.txt /opt/custom_nodes.txt
RUN mkdir -p /opt/custom_nodes_pinned \
 && grep -v '^\s*#' /opt/custom_nodes.txt | while read -r url commit; do \
      [ -n "$url" ] || continue; \
      name=$(basename "$url" .git); \
      git clone "$url" "/opt/custom_nodes_pinned/$name" && git -C "/opt/custom_nodes_pinned/$name" checkout "$commit"; \
      [ ! -f "/opt/custom_nodes_pinned/$name/requirements.txt" ] || pip install -r "/opt/custom_nodes_pinned/$name/requirements.txt"; \
    done
# Pinned custom nodes are linked into custom_nodes/ at start, next to the operator's own.
ENTRYPOINT ["/bin/sh", "-c", "for d in /opt/custom_nodes_pinned/*/; do [ -d \"$d\" ] && ln -sfn \"$d\" /opt/comfyui/custom_nodes/; done; exec \"$@\"", "--"]

EXPOSE 8188
# compose.gpu.yml gives each instance its own port; --listen 127.0.0.1 keeps it off the network.
CMD ["python", "main.py", "--listen", "127.0.0.1", "--port", "8188", "--preview-method", "auto"]
