"""Uploaded files: stored with Django's default storage, owned by the App that received them.

What a run's engine sees (`input.files`, a list in upload order): `{id, name, size, mime_type}` and, for a
small text file (text/*, JSON, XML, YAML, CSV; at most FILE_TEXT_CONTENT_BYTES, valid UTF-8), its text as
`content`, so a template can use `{{ input.files[0].content }}`. Binary or larger files are described
without content, and never by a storage path.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.core.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized
from apps.deployments.models import App

from .models import File, Run

logger = logging.getLogger(__name__)

FILE_TEXT_CONTENT_BYTES = 64 * 1024
MAX_FILES_PER_RUN = settings.MAX_FILES_PER_REQUEST  # the schema's documented maximum
_TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/x-yaml", "text/csv")


def _mime_type(upload: UploadedFile, name: str) -> str:
    given = (upload.content_type or "").split(";")[0].strip().lower()
    if given and given != "application/octet-stream" and "/" in given and len(given) <= 255:
        return given
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def upload_name(upload: UploadedFile) -> str:
    return os.path.basename((upload.name or "").replace("\\", "/"))[:255] or "upload"


def upload_digest(upload: UploadedFile) -> dict[str, Any]:
    """What identifies an upload in an Idempotency-Key fingerprint: name, size and content hash."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return {"name": upload_name(upload), "size": upload.size, "sha256": digest.hexdigest()}


def app_storage_used(*, app: App) -> int:
    return File.objects.filter(app=app).aggregate(total=Sum("size"))["total"] or 0


def _refuse_over_quota(*, app: App, incoming: int) -> None:
    quota = settings.APP_STORAGE_QUOTA_BYTES
    if incoming and app_storage_used(app=app) + incoming > quota:
        raise PayloadTooLarge(
            f"The App's file storage quota of {quota} bytes would be exceeded. Delete old runs' files or wait "
            "for unreferenced files to be purged.",
            details={"files": [f"the App may hold at most {quota} bytes of files"]},
        )


def uploads_check(*, app: App, uploads: list[UploadedFile], anonymous: bool) -> None:
    """Everything about a set of uploads that can be refused before a byte is stored (SPEC.md section 12):
    who may upload, how many, how large each, and the App's quota."""
    if not uploads:
        return
    if anonymous and not app.allow_anonymous_uploads:
        # Same rule as user_id on public Apps: what would let anyone consume the App's resources needs a key.
        raise Unauthorized("Uploading files to this App needs an access key.",
                           details={"files": ["anonymous uploads are not enabled for this App"]})
    if len(uploads) > settings.MAX_FILES_PER_REQUEST:
        raise BadRequest("Too many files.", details={"files": [f"at most {settings.MAX_FILES_PER_REQUEST}"]})
    for upload in uploads:
        if upload.size is None or upload.size > settings.MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"A file may be at most {settings.MAX_UPLOAD_BYTES} bytes.",
                                  details={"file": [f"larger than {settings.MAX_UPLOAD_BYTES} bytes"]})
    _refuse_over_quota(app=app, incoming=sum(u.size for u in uploads))


def files_store(*, app: App, uploads: list[UploadedFile]) -> list[File]:
    """Store checked uploads as Files of `app`, within its quota. The App row is locked while the quota is
    checked and the files written, so concurrent uploads cannot each pass the check and overshoot it;
    bytes written by a failed attempt are deleted again."""
    stored: list[File] = []
    try:
        with transaction.atomic():
            App.objects.select_for_update().filter(pk=app.pk).first()
            _refuse_over_quota(app=app, incoming=sum(u.size for u in uploads))
            for upload in uploads:
                name = upload_name(upload)
                record = File(id=uuid.uuid4(), app=app, name=name, size=upload.size, mime_type=_mime_type(upload, name))
                record.file.save(str(record.id), upload, save=False)
                stored.append(record)
                record.save(force_insert=True)
    except BaseException:
        for record in stored:
            record.file.storage.delete(record.file.name)
        raise
    return stored


def file_create(*, app: App, upload: UploadedFile, anonymous: bool = False) -> File:
    """Check and store one upload for `app` (413 over MAX_UPLOAD_BYTES or the App's quota)."""
    uploads_check(app=app, uploads=[upload], anonymous=anonymous)
    return files_store(app=app, uploads=[upload])[0]


def files_purge_unreferenced(*, now: datetime | None = None, dry_run: bool = False) -> int:
    """Delete Files older than UNREFERENCED_FILE_RETENTION_HOURS that no run references: stored bytes first,
    then rows (a crash in between leaves rows whose bytes are gone, deleted again by the next purge), a
    batch of RETENTION_BATCH_SIZE at a time (one short DELETE each). Returns how many were deleted (with
    `dry_run`, would be: nothing is deleted). A run can only reference a file that existed when it was
    accepted, so only runs created since the oldest candidate are read."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.UNREFERENCED_FILE_RETENTION_HOURS)
    candidates = list(File.objects.filter(created_at__lt=cutoff).only("id", "app_id", "file", "created_at"))
    if not candidates:
        return 0
    oldest = min(f.created_at for f in candidates)
    referenced: set[str] = set()
    runs = Run.objects.filter(app_id__in={f.app_id for f in candidates}, created_at__gte=oldest).exclude(file_ids=[])
    for file_ids in runs.values_list("file_ids", flat=True).iterator(chunk_size=2000):
        referenced.update(str(file_id) for file_id in file_ids or [])
    doomed = [f for f in candidates if str(f.id) not in referenced]
    if dry_run:
        return len(doomed)
    batch_size = settings.RETENTION_BATCH_SIZE
    for start in range(0, len(doomed), batch_size):
        batch = doomed[start:start + batch_size]
        for record in batch:
            if record.file.name:
                record.file.storage.delete(record.file.name)
        File.objects.filter(id__in=[f.id for f in batch]).delete()
    if doomed:
        logger.info("purged %d unreferenced files", len(doomed))
    return len(doomed)


def files_purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """The retention job's face of files_purge_unreferenced (apps.scheduler): {"files": count}."""
    return {"files": files_purge_unreferenced(now=now, dry_run=dry_run)}


def files_for_app(*, app: App, file_ids: list[str]) -> list[File]:
    """The App's files with these IDs, in the given order. A file of another App is as unknown as a file
    that does not exist: 404."""
    if not file_ids:
        return []
    found = {str(f.id): f for f in File.objects.filter(app=app, id__in=file_ids)}
    missing = [file_id for file_id in file_ids if file_id not in found]
    if missing:
        raise NotFound("No such file.", details={"file_ids": [f"unknown file: {file_id}" for file_id in missing]})
    return [found[file_id] for file_id in file_ids]


def serialize_file(record: File) -> dict[str, Any]:
    return {"id": str(record.id), "name": record.name, "size": record.size, "mime_type": record.mime_type}


def _is_text(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in _TEXT_TYPES or mime_type.endswith("+json")


def file_descriptors(*, app_id, file_ids: list[str]) -> list[dict[str, Any]]:
    """What the engine gets for a run's files (see module doc). One query, plus reading small text files."""
    records = {str(f.id): f for f in File.objects.filter(app_id=app_id, id__in=file_ids)}
    descriptors = []
    for file_id in file_ids:
        record = records.get(str(file_id))
        if record is None:  # deleted since the run was accepted
            continue
        descriptor = serialize_file(record)
        if _is_text(record.mime_type) and record.size <= FILE_TEXT_CONTENT_BYTES:
            try:
                with record.file.open("rb") as handle:
                    text = handle.read(FILE_TEXT_CONTENT_BYTES + 1).decode("utf-8")
                if "\x00" not in text:  # NUL: binary after all (and PostgreSQL JSON cannot store it)
                    descriptor["content"] = text
            except (OSError, UnicodeDecodeError):
                pass
        descriptors.append(descriptor)
    return descriptors
