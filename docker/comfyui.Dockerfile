# ComfyUI on the GPU host, at the release this platform supports (its frontend is pinned in
# requirements.txt: comfyui-frontend-package 1.27.10 belongs to ComfyUI 0.3.64).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG COMFYUI_VERSION=v0.3.64
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update && apt-get install -y --no-install-recommends git python3 python3-pip python3-venv \
      libgl1 libglib2.0-0 ffmpeg && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN git clone --depth 1 --branch ${COMFYUI_VERSION} https://github.com/comfyanonymous/ComfyUI.git /opt/comfyui
WORKDIR /opt/comfyui
RUN pip install torch torchvision torchaudio --index-url https://download.pytorch.org/whl/cu128 \
 && pip install -r requirements.txt \
 # ComfyUI imports requests at start without declaring it.
 && pip install requests
EXPOSE 8188
CMD ["python", "main.py", "--listen", "127.0.0.1", "--port", "8188", "--preview-method", "auto"]
