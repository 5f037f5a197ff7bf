"""Tenant A's data bank for the cross-tenant matrix: a folder, a file with a version, a share
link, a backup copy and an item in the recycle bin (names carry A's marker)."""

from __future__ import annotations

from typing import Any

from canal.platform.storage.services import iterate_bytes


async def add_samples(world: Any, ctx_a: Any) -> None:
    from canal.exchange.bank import services

    space = services.tenant_space(ctx_a)
    marker = world.markers[0]
    folder = await services.create_folder(space, None, f"{marker}-folder")
    data = f"{marker} data bank\n".encode()
    file = await services.upload(
        space,
        folder.id,
        iterate_bytes(data),
        filename=f"{marker}-bank.txt",
        declared_size=len(data),
    )
    share = await services.create_share(space, file.id, days=1)
    backup = await services.run_backup(ctx_a, folder.id)
    binned = await services.upload(
        space, folder.id, iterate_bytes(b"binned\n"), filename=f"{marker}-bin.txt"
    )
    await services.delete_file(space, binned.id)
    [item] = await services.list_trash(space)
    world.samples.update(
        {
            "bank_folder_id": str(folder.id),
            "bank_file_id": str(file.id),
            "version_id": str(file.current_version_id),
            "share_id": str(share.share.id),
            "backup_id": str(backup.id),
            "trash_id": str(item.trash_id),
        }
    )
    await _chunked_sample(world, ctx_a)


async def _chunked_sample(world: Any, ctx_a: Any) -> None:
    from canal.exchange.bank import services

    started = await services.start_upload(
        services.tenant_space(ctx_a), name=f"{world.markers[0]}-big.csv", size=10
    )
    world.samples.update({"upload_id": str(started.id), "part": "0"})
