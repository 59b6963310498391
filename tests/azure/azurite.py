"""Azurite, Microsoft's Azure Storage emulator (npm ``azurite``), as the workspace's blob storage.

``.ci/setup-azurite.sh`` installs it (pinned, once per machine; run here when it is missing). A
session starts one ``azurite-blob`` on a free loopback port with its data in a temporary folder,
creates the workspace's blob container, and mints the write SAS URLs the emulated
startPendingUpload hands out (Azurite checks their signatures like Azure Storage). The account is
Azurite's documented development account (``devstoreaccount1``, a published, non-secret key).
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (documented by Microsoft; the same in every installation).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "azureml-blobstore"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def azurite_binary() -> Path:
    """The azurite-blob executable, installed by .ci/setup-azurite.sh when it is not there yet."""
    script = ROOT / ".ci" / "setup-azurite.sh"
    path = Path(subprocess.run(["bash", str(script), "path"], capture_output=True, text=True, check=True).stdout.strip())
    if not path.exists():
        subprocess.run(["bash", str(script)], check=True, stdin=subprocess.DEVNULL, timeout=600)
    return path


class Azurite:
    """One running Azurite blob service; ``close()`` stops it."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(data_dir / "azurite.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [str(azurite_binary()), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
             str(data_dir), "--skipApiVersionCheck", "--loose", "--silent", "--disableProductStyleUrl"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "AZURITE_ACCOUNTS": ""} if "AZURITE_ACCOUNTS" in os.environ else None,
        )
        self._wait()
        self.service().create_container(CONTAINER)

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def _wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited {self.proc.returncode}: {(self.data_dir / 'azurite.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("azurite did not listen within 60 s")

    def service(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})

    def pending_upload(self, prefix: str) -> tuple[str, str]:
        """(blobUri, sasUri) of a folder in the container that a client may write for an hour."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(ACCOUNT, CONTAINER, account_key=ACCOUNT_KEY,
                                     permission=ContainerSasPermissions(read=True, write=True, create=True, list=True),
                                     expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
        uri = f"{self.account_url}/{CONTAINER}/{prefix}"
        return uri, f"{uri}?{sas}"

    def blobs(self, uri: str) -> dict[str, bytes]:
        """Every blob under a blobUri, by name relative to it."""
        path = urlsplit(uri).path.split(f"/{CONTAINER}/", 1)[1]
        container = self.service().get_container_client(CONTAINER)
        return {b.name[len(path) + 1:]: container.download_blob(b.name).readall()
                for b in container.list_blobs(name_starts_with=path + "/")}

    def has_blobs(self, uri: str) -> bool:
        path = urlsplit(uri).path.split(f"/{CONTAINER}/", 1)[-1]
        container = self.service().get_container_client(CONTAINER)
        return any(True for _ in container.list_blobs(name_starts_with=path.rstrip("/") + "/"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
