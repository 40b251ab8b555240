# ComfyUI for the GPU host, at the release this platform supports: 0.3.64 (its frontend,
# comfyui-frontend-package 1.27.10, and workflow templates 0.1.95 are the versions the app
# pins in requirements.txt). Built from the repository root by compose.gpu.yml.
# torch comes from the PyTorch CUDA index; its wheels bring their own CUDA libraries, so the
# host needs only an NVIDIA driver for CUDA 12.8 and the NVIDIA Container Toolkit.
FROM nvidia/cuda:12.8.1-base-ubuntu24.04

ARG COMFYUI_VERSION=v0.3.64
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# The torch release current when ComfyUI 0.3.64 came out.
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

EXPOSE 8188
# compose.gpu.yml gives each instance its own port; --listen 127.0.0.1 keeps it off the network.
CMD ["python", "main.py", "--listen", "127.0.0.1", "--port", "8188", "--preview-method", "auto"]
