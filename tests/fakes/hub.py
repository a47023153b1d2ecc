"""A fake Hugging Face hub: the two documented HTTP routes a diffusers download uses, served from local folders.

- ``GET /api/models/{owner}/{name}/revision/{revision}?blobs=true``: the commit sha and every file
  (``siblings``: ``rfilename``, ``size``, and ``lfs.sha256`` for ``.safetensors``, as the hub lists LFS files);
- ``GET /{owner}/{name}/resolve/{revision}/{path}``: the file, honouring ``Range: bytes=N-`` with 206.

``extra_files`` lists files the repository has but the fake does not serve (a pickle, a top-level single-file
checkpoint, an fp16 variant): a client that asks for one gets a 404. Also ``GET /files/{name}``: plain files
(a LoRA behind a URL).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.server import FakeServer, Handler

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, Path] = {}
        self.extra_files: dict[str, int] = {}  # listed, never served: path → size
        self.files: dict[str, bytes] = {}  # /files/{name}

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("info", "GET", "/api/models/{owner}/{name}/revision/{revision}", self._info),
            ("file", "GET", "/{owner}/{name}/resolve/{revision}/{path:path}", self._file),
            ("plain", "GET", "/files/{name}", self._plain),
        ]

    def _repo(self, request: Request) -> Path | None:
        return self.repos.get(f"{request.path_params['owner']}/{request.path_params['name']}")

    async def _info(self, request: Request) -> Response:
        folder = self._repo(request)
        if folder is None:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        siblings = []
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            entry: dict = {"rfilename": file.relative_to(folder).as_posix(), "size": file.stat().st_size}
            if file.suffix == ".safetensors":
                entry["lfs"] = {"sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "size": entry["size"]}
            siblings.append(entry)
        siblings += [{"rfilename": path, "size": size} for path, size in self.extra_files.items()]
        return JSONResponse({"id": f"{request.path_params['owner']}/{request.path_params['name']}", "sha": COMMIT,
                             "siblings": siblings})

    async def _file(self, request: Request) -> Response:
        folder = self._repo(request)
        file = folder / request.path_params["path"] if folder else None
        if file is None or request.path_params["revision"] != COMMIT or not file.is_file():
            return Response(b"Entry not found", status_code=404)
        data = file.read_bytes()
        ranged = request.headers.get("range", "")
        if ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[6:-1])
            return Response(data[start:], status_code=206,
                            headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return Response(data)

    async def _plain(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        return Response(data, media_type="application/octet-stream") if data is not None \
            else Response(b"not found", status_code=404)
