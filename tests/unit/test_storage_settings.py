"""Which store BATCHLINE_STORAGE_URL opens, and the secret staying secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchline.settings import Settings
from batchline.storage import LocalDirectoryStorage, S3Storage, open_storage


def test_storage_settings_come_from_the_environment_and_hide_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHLINE_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("BATCHLINE_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("BATCHLINE_S3_SECRET_ACCESS_KEY", "very-secret")

    settings = Settings()

    assert settings.storage_url == "s3://bucket/prefix"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "very-secret"
    assert "very-secret" not in repr(settings)


async def test_a_file_url_or_nothing_opens_a_local_directory(tmp_path: Path) -> None:
    async with open_storage(Settings(storage_url=f"file://{tmp_path}/files")) as storage:
        assert isinstance(storage, LocalDirectoryStorage)
        assert storage.root == tmp_path / "files"
        assert storage.root.is_dir()
    async with open_storage(Settings(data_dir=tmp_path)) as storage:
        assert isinstance(storage, LocalDirectoryStorage)
        assert storage.root == tmp_path / "storage"


async def test_an_s3_url_names_bucket_and_prefix() -> None:
    settings = Settings(storage_url="s3://bucket/some/prefix/", s3_endpoint_url="http://x:9000")
    async with open_storage(settings) as storage:
        assert isinstance(storage, S3Storage)
        assert (storage.bucket, storage.prefix) == ("bucket", "some/prefix/")


async def test_other_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="BATCHLINE_STORAGE_URL"):
        async with open_storage(Settings(storage_url="ftp://host/dir")):
            pass
