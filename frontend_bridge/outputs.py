"""My outputs: every picture and video of a workspace, newest first; downloads and one zip."""

import zipfile
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render

from accounts.access import workspace_for

VIDEO = {".mp4", ".webm", ".mov", ".mkv"}
IMAGE = {".png", ".jpg", ".jpeg", ".webp", ".gif"}


def output_files(workspace) -> list[dict]:
    root = workspace.root / "output"
    if not root.is_dir():
        return []
    files = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.is_symlink():
            continue
        stat = path.stat()
        subfolder = str(path.parent.relative_to(root)) if path.parent != root else ""
        suffix = path.suffix.lower()
        files.append(
            {
                "filename": path.name,
                "subfolder": subfolder,
                "size": stat.st_size,
                "modified": stat.st_mtime,
                "kind": "video" if suffix in VIDEO else "image" if suffix in IMAGE else "file",
            }
        )
    return sorted(files, key=lambda f: f["modified"], reverse=True)


@login_required
def outputs_page(request, slug):
    workspace = workspace_for(request.user, slug)
    files = output_files(workspace)
    return render(
        request,
        "outputs.html",
        {
            "workspace": workspace,
            "files": files,
            "total": sum(f["size"] for f in files),
        },
    )


class _Pipe:
    """A write-only file for zipfile whose bytes we hand on as they come."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data):
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self):
        return self.offset

    def flush(self):
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _zip_stream(root: Path, files: list[dict]):
    pipe = _Pipe()
    # Stored, not deflated: pictures and videos are compressed already. Streamed in 1 MB pieces,
    # so a workspace with gigabytes of video never sits in memory.
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]  # a write-only pipe, as zipfile streams to one
        for item in files:
            arcname = f"{item['subfolder']}/{item['filename']}" if item["subfolder"] else item["filename"]
            with (
                open(root / item["subfolder"] / item["filename"], "rb") as source,
                archive.open(arcname, "w", force_zip64=True) as target,
            ):
                while chunk := source.read(1024 * 1024):
                    target.write(chunk)
                    yield pipe.take()
            yield pipe.take()
    yield pipe.take()


@login_required
def outputs_zip(request, slug):
    workspace = workspace_for(request.user, slug)
    files = output_files(workspace)
    if not files:
        raise Http404("No outputs yet")
    response = StreamingHttpResponse(_zip_stream(workspace.root / "output", files), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="workshop-{workspace.slug}-outputs.zip"'
    return response
