"""The model-free nodes the double really computes, with Pillow instead of torch.

An IMAGE is a batch: a list of PIL images (RGB, or RGBA after JoinImageWithAlpha); a MASK is a
list of 8-bit "L" images where 255 stands for ComfyUI's 1.0. Each node is a function
`node(ctx, **inputs) -> (outputs tuple, ui dict or None)`, named like its class_type.
Node functions run in a worker thread: they never touch the event loop, they leave progress
text and preview frames in `ctx` for the server to send afterwards.
"""

import datetime
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageFilter, ImageSequence, PngImagePlugin

IMAGE_CHANNELS = ["red", "green", "blue", "alpha"]


@dataclass
class Context:
    node_id: str
    prompt: dict
    extra_pnginfo: dict | None
    folders: dict  # "input" / "output" / "temp" -> Path
    temp_prefix: str  # PreviewImage's "_temp_xxxxx", kept per node like ComfyUI's node objects
    texts: list = field(default_factory=list)  # progress text (binary event 3)
    previews: list = field(default_factory=list)  # (value, max, png bytes) from a node's own progress bar


def random_temp_prefix() -> str:
    # ComfyUI's alphabet, typo included (no "w", "p" twice).
    return "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))


def resolve_annotated(name: str, folders: dict, default: str = "input") -> Path:
    """`x.png [output]` names a file in another folder, like folder_paths.get_annotated_filepath."""
    kind = default
    for candidate in ("input", "output", "temp"):
        if name.endswith(f" [{candidate}]"):
            name, kind = name[: -len(candidate) - 3], candidate
    base = folders[kind].resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):  # real ComfyUI does not check; a double on a dev box should
        raise ValueError(f"Invalid image file: {name}")
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --- saving, with ComfyUI's names (folder_paths.get_save_image_path) --------------------------


def _expand_prefix(prefix: str, width: int, height: int) -> str:
    if "%" not in prefix:
        return prefix
    now = datetime.datetime.now()
    for key, value in {
        "width": width,
        "height": height,
        "year": now.year,
        "month": f"{now.month:02}",
        "day": f"{now.day:02}",
        "hour": f"{now.hour:02}",
        "minute": f"{now.minute:02}",
        "second": f"{now.second:02}",
    }.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def save_path(prefix: str, base: Path, width: int, height: int):
    """(folder, file stem, first free counter, subfolder). The counter continues after the highest
    `{stem}_NNNNN_` already on disk, so names never repeat while the folder keeps its files."""
    prefix = os.path.normpath(_expand_prefix(prefix, width, height))
    subfolder, stem = os.path.dirname(prefix), os.path.basename(prefix)
    base = base.resolve()
    folder = (base / subfolder).resolve()
    if not folder.is_relative_to(base):
        raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)
    highest = 0
    for existing in os.listdir(folder):
        if existing.startswith(stem + "_"):
            digits = existing[len(stem) + 1 :].split("_")[0]
            highest = max(highest, int(digits) if digits.isdigit() else 0)
    return folder, stem, highest + 1, subfolder


def _save_pngs(ctx, images, prefix, kind, compress_level):
    folder, stem, counter, subfolder = save_path(prefix, ctx.folders[kind], images[0].width, images[0].height)
    info = PngImagePlugin.PngInfo()
    if ctx.prompt is not None:
        info.add_text("prompt", json.dumps(ctx.prompt))
    for key, value in (ctx.extra_pnginfo or {}).items():
        info.add_text(key, json.dumps(value))
    results = []
    for batch_number, image in enumerate(images):
        name = f"{stem.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        image.save(folder / name, pnginfo=info, compress_level=compress_level)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return results


# --- the nodes ---------------------------------------------------------------------------------


def EmptyImage(ctx, width, height, batch_size=1, color=0):
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    return ([Image.new("RGB", (width, height), rgb) for _ in range(batch_size)],), None


def ImageInvert(ctx, image):
    # 1.0 - image on every channel, alpha included (that is what the tensor op does).
    return ([im.point(lambda v: 255 - v) for im in image],), None


def ImageBlur(ctx, image, blur_radius, sigma):
    if blur_radius == 0:
        return (image,), None
    return ([im.filter(ImageFilter.GaussianBlur(radius=sigma)) for im in image],), None


def SolidMask(ctx, value, width, height):
    return ([Image.new("L", (width, height), round(max(0.0, min(1.0, value)) * 255))],), None


def JoinImageWithAlpha(ctx, image, alpha):
    # The mask is resized to the image and inverted: a mask of 1.0 means fully transparent.
    out = []
    for im, mask in zip(image, alpha, strict=False):  # ComfyUI also stops at the shorter batch
        rgba = im.convert("RGB")
        rgba.putalpha(mask.resize(im.size, Image.BILINEAR).point(lambda v: 255 - v))
        out.append(rgba)
    return (out,), None


def ImageToMask(ctx, image, channel):
    index = IMAGE_CHANNELS.index(channel)
    size = len(image[0].getbands())
    if index >= size:
        # What torch says for image[:, :, :, 3] on an RGB batch.
        raise IndexError(f"index {index} is out of bounds for dimension 3 with size {size}")
    return ([im.getchannel(index) for im in image],), None


def MaskToImage(ctx, mask):
    return ([Image.merge("RGB", (m, m, m)) for m in mask],), None


def GetImageSize(ctx, image):
    width, height = image[0].size
    ctx.texts.append(f"width: {width}, height: {height}\n batch size: {len(image)}")
    return (width, height, len(image)), None


def PreviewAny(ctx, source=None):
    if source is None:
        value = "None"
    elif isinstance(source, str):
        value = source
    elif isinstance(source, (int, float, bool)):
        value = str(source)
    else:
        try:
            value = json.dumps(source)
        except (TypeError, ValueError):
            value = str(source)
    return (), {"text": [value]}


def LoadImage(ctx, image):
    path = resolve_annotated(image, ctx.folders)
    images, masks = [], []
    with Image.open(path) as opened:
        for frame in ImageSequence.Iterator(opened):
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if images and rgb.size != images[0].size:
                continue  # ComfyUI skips frames of another size too
            if "A" in frame.getbands():
                mask = frame.getchannel("A").point(lambda v: 255 - v)
            elif frame.mode == "P" and "transparency" in frame.info:
                mask = frame.convert("RGBA").getchannel("A").point(lambda v: 255 - v)
            else:
                mask = Image.new("L", (64, 64), 0)  # ComfyUI's placeholder for "no alpha"
            images.append(rgb)
            masks.append(mask)
    return (images, masks), None


def SaveImage(ctx, images, filename_prefix="ComfyUI"):
    return (), {"images": _save_pngs(ctx, images, filename_prefix, "output", compress_level=4)}


def PreviewImage(ctx, images):
    return (), {"images": _save_pngs(ctx, images, "ComfyUI" + ctx.temp_prefix, "temp", compress_level=1)}


def SaveAnimatedWEBP(ctx, images, filename_prefix, fps, lossless, quality, method):
    folder, stem, counter, subfolder = save_path(
        filename_prefix, ctx.folders["output"], images[0].width, images[0].height
    )
    name = f"{stem}_{counter:05}_.webp"
    images[0].save(
        folder / name,
        save_all=True,
        append_images=images[1:],
        duration=int(1000.0 / fps),
        lossless=lossless,
        quality=quality,
        method={"default": 4, "fastest": 0, "slowest": 6}[method],
    )
    return (), {
        "images": [{"filename": name, "subfolder": subfolder, "type": "output"}],
        "animated": [len(images) != 1],
    }


def SaveImageWebsocket(ctx, images):
    # ComfyUI's websocket_image_save example node: each image goes out as a preview frame only.
    for step, image in enumerate(images):
        ctx.previews.append((step, len(images), png_bytes(image)))
    return (), None


def dotted(kwargs: dict, name: str) -> dict:
    """A V3 dynamic input's values, {"width": 32, …}, from the prompt's flat `name.width` keys."""
    return {key.split(".", 1)[1]: value for key, value in kwargs.items() if key.startswith(name + ".")}


def ResizeImageMaskNode(ctx, input, scale_method, resize_type=None, **rest):
    """Only "scale dimensions" is computed; the other options keep the size."""
    options = dotted(rest, "resize_type")
    if resize_type is None:
        raise TypeError("ResizeImageMaskNode.execute() missing 1 required positional argument: 'resize_type'")
    if resize_type != "scale dimensions":
        return (input,), None
    size = (int(options["width"]) or input[0].width, int(options["height"]) or input[0].height)
    return (
        [
            im.resize(size, Image.Resampling.BOX if scale_method == "area" else Image.Resampling.BILINEAR)
            for im in input
        ],
    ), None


def BatchImagesNode(ctx, **rest):
    images = dotted(rest, "images")
    batch = [im for key in sorted(images, key=lambda k: int(k.removeprefix("image"))) for im in images[key]]
    size = batch[0].size
    return ([im if im.size == size else im.resize(size) for im in batch],), None


def ComfySwitchNode(ctx, switch, on_false=None, on_true=None):
    return (on_true if switch else on_false,), None


def SaveVideo(ctx, video, filename_prefix="video/ComfyUI", format="auto", codec="auto"):
    """Stand-in for a model's video: a short animated WEBP under the .mp4 name ComfyUI would write
    is not playable, so an animated image is saved instead (the name says which)."""
    frames = (
        video
        if isinstance(video, list) and video and isinstance(video[0], Image.Image)
        else [Image.new("RGB", (64, 64), (40 * i % 255, 80, 160)) for i in range(4)]
    )
    folder, stem, counter, subfolder = save_path(
        filename_prefix, ctx.folders["output"], frames[0].width, frames[0].height
    )
    name = f"{stem}_{counter:05}_.webp"
    frames[0].save(folder / name, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    return (), {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}


def stand_in(info: dict):
    """A node that needs models, run model-free: outputs placeholders of the declared count."""

    def node(ctx, **kwargs):
        return tuple(None for _ in info.get("output") or ()), None

    return node


NODES = {
    fn.__name__: fn
    for fn in (
        EmptyImage,
        ImageInvert,
        ImageBlur,
        SolidMask,
        JoinImageWithAlpha,
        ImageToMask,
        MaskToImage,
        GetImageSize,
        PreviewAny,
        LoadImage,
        SaveImage,
        PreviewImage,
        SaveAnimatedWEBP,
        SaveImageWebsocket,
        ResizeImageMaskNode,
        BatchImagesNode,
        ComfySwitchNode,
        SaveVideo,
    )
}
