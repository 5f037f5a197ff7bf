"""``canal exchange identify FILE``: which grant a leaked CSV was delivered under."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


async def identify_file(path: Path) -> int:
    """Print the grant (and buyer) whose fingerprint the file carries; 0 if found, 1 if not."""
    from canal.exchange.services import identify

    try:
        found = await identify(await asyncio.to_thread(path.read_bytes))
    except (OSError, ValueError) as error:
        print(f"无法读取文件 / cannot read the file: {error}", file=sys.stderr)
        return 2
    if found is None:
        print("未找到匹配的授权 / no grant's fingerprint matches this file")
        return 1
    print(
        f"grant {found.grant_id}\n"
        f"buyer {found.buyer_name} ({found.buyer_tenant_id})\n"
        f"provider {found.provider_tenant_id}\n"
        f"dataset {found.dataset_id}\n"
        f"marks {found.matches}/{found.checked} matched"
    )
    return 0


def identify_command(runtime: object, path: str) -> int:
    from canal.platform import db

    async def run() -> int:
        await db.start_pool(runtime.app_dsn, min_size=1, max_size=2)  # type: ignore[attr-defined]
        try:
            return await identify_file(Path(path))
        finally:
            await db.close_pool()

    return asyncio.run(run())
