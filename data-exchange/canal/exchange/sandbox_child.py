"""The compute-to-data sandbox process: one query, one dataset, then exit.

Started by ``canal.exchange.sandbox.run_query`` with ``python -I`` and only this file; it
imports nothing of Canal. Limits are set before DuckDB loads: address space, CPU seconds, no
file may be written (RLIMIT_FSIZE 0) and no new files opened beyond a handful. DuckDB itself
runs with external access off except for the one Parquet file (``allowed_paths``), no
extension install or autoload, no community extensions, and the configuration locked before
the buyer's SQL runs, so the SQL cannot switch any of it back on.
"""

import datetime
import decimal
import json
import resource
import sys


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    address_space = (memory_mb + 768) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _plain(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.date | datetime.datetime | datetime.time):
        return value.isoformat()
    if isinstance(value, int | float | str) or value is None:
        return value
    return str(value)


def main() -> int:
    # Imported before the job arrives: a spare process waits here, warm, so a query does not
    # pay for the interpreter and DuckDB starting. The limits apply before any SQL runs.
    import duckdb

    job = json.loads(sys.stdin.read())
    _limit(int(job["memory_mb"]), int(job["cpu_seconds"]))

    try:
        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "memory_limit": f"{int(job['memory_mb'])}MB",
                "threads": int(job["threads"]),
                "temp_directory": "",
            },
        )
        path = job["path"].replace("'", "''")
        # allowed_paths must be set while external access is still on; then access goes off.
        con.execute(f"SET allowed_paths = ['{path}']")
        con.execute("SET enable_external_access = false")
        con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet('{path}')")
        con.execute("SET lock_configuration = true")
        cursor = con.execute(job["sql"])
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchmany(int(job["max_rows"]) + 1)
    except duckdb.OutOfMemoryException as error:
        print(json.dumps({"error": "memory", "detail": str(error)[:300]}))
        return 0
    except duckdb.Error as error:
        print(json.dumps({"error": "query", "detail": str(error).splitlines()[0][:300]}))
        return 0
    except MemoryError:
        print(json.dumps({"error": "memory", "detail": "address space limit"}))
        return 0
    print(json.dumps({"columns": columns, "rows": [[_plain(v) for v in r] for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
