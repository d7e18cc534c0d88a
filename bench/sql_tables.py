"""What the query cache's table extraction costs per statement: the first sight of a statement
text (sqlglot parses it, in the engine's dialect) beside every later one (the LRU answer).

    .venv/bin/python -m bench.sql_tables [--rounds 300]

Wall and CPU µs per call. Parameterised SQL (Tina4's ``?`` placeholders) is parsed once per
distinct text, so the second column is what a query-cache HIT pays; SQL with literals inlined
pays the first column on every new literal. No assertion: the table is the result.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tina4_sidecar.client.sql_tables import analyze

STATEMENTS = {
    "catalog page (join, 2 params)": (
        "SELECT p.*, c.name AS category_name FROM products p JOIN categories c ON p.category_id = c.id "
        "WHERE p.active = 1 ORDER BY p.created_at DESC LIMIT ? OFFSET ?",
        "sqlite",
    ),
    "CTE + subquery (postgres)": (
        "WITH recent AS (SELECT * FROM orders WHERE at > $1) SELECT r.*, (SELECT max(price) FROM prices) "
        "FROM recent r JOIN customers c ON c.id = r.customer_id WHERE r.id IN (SELECT id FROM flagged)",
        "postgres",
    ),
    "insert (mysql upsert)": ("INSERT INTO t (a) VALUES (%s) ON DUPLICATE KEY UPDATE b = VALUES(b)", "mysql"),
}


def per_call(work: Callable[[], object], rounds: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        work()
    return (time.perf_counter() - wall) / rounds * 1e6, (time.process_time() - cpu) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    print("| statement | first sight: wall µs | CPU µs | cached: wall µs | CPU µs |")
    print("|---|---:|---:|---:|---:|")
    for label, (sql, dialect) in STATEMENTS.items():
        cold_wall, cold_cpu = per_call(lambda s=sql, d=dialect: analyze.__wrapped__(s, d), rounds)
        analyze(sql, dialect)
        hot_wall, hot_cpu = per_call(lambda s=sql, d=dialect: analyze(s, d), rounds * 300)
        print(f"| {label} | {cold_wall:,.0f} | {cold_cpu:,.0f} | {hot_wall:.2f} | {hot_cpu:.2f} |")
    print(f"\n{rounds} first sights, {rounds * 300} cached answers per statement")
    print(f"command: .venv/bin/python -m bench.sql_tables --rounds {rounds}")


if __name__ == "__main__":
    main()
