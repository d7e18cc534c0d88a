"""Which tables a statement reads or writes (client/sql_tables.py): what the query cache's
table-granular invalidation rests on, and the conservative answers where it cannot tell."""

from __future__ import annotations

import pytest

from tina4_sidecar.client.sql_tables import OTHER, READ, WRITE, analyze

CATALOG = """SELECT p.*, c.name as category_name
           FROM products p
           JOIN categories c ON p.category_id = c.id
           WHERE p.active = 1
           ORDER BY p.created_at DESC
           LIMIT ? OFFSET ?"""


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        (CATALOG, {"products", "categories"}),
        ("SELECT COUNT(*) as count FROM products WHERE active = 1", {"products"}),
        (
            "SELECT * FROM a LEFT OUTER JOIN b ON a.id = b.a_id CROSS JOIN c NATURAL JOIN d",
            {"a", "b", "c", "d"},
        ),
        ("SELECT * FROM a, b AS bee, c cee WHERE a.x = bee.x", {"a", "b", "c"}),
        (
            "SELECT * FROM a JOIN (SELECT * FROM b JOIN c USING (id)) AS s ON s.id = a.id, d",
            {"a", "b", "c", "d"},
        ),
        ("SELECT * FROM t WHERE x IN (SELECT y FROM u WHERE EXISTS (SELECT 1 FROM v))", {"t", "u", "v"}),
        ("SELECT (SELECT max(price) FROM prices) AS top FROM items", {"prices", "items"}),
        ('SELECT * FROM "Order Items" oi JOIN "Customers" c ON 1 = 1', {"order items", "customers"}),
        ("SELECT * FROM `order items`", {"order items"}),
        ("SELECT * FROM [Order Details] od", {"order details"}),
        ('SELECT * FROM sales."Orders" o JOIN public.customers c ON o.c = c.id', {"orders", "customers"}),
        ("SELECT * FROM main.products", {"products"}),
        ("SELECT a FROM x UNION SELECT b FROM y EXCEPT SELECT c FROM z", {"x", "y", "z"}),
        ("(SELECT a FROM x) UNION ALL (SELECT b FROM y)", {"x", "y"}),
        ("TABLE products", {"products"}),
        ("SELECT EXTRACT(YEAR FROM created) AS y, SUBSTRING(name FROM 2 FOR 3) FROM orders", {"orders"}),
        ("SELECT * FROM a WHERE b IS DISTINCT FROM c", {"a"}),
        ("SELECT * FROM t WHERE note = 'SELECT * FROM secret' -- FROM hidden", {"t"}),
        ("SELECT * FROM t /* JOIN hidden */ WHERE x = $$ FROM also_hidden $$", {"t"}),
        ("SELECT * FROM t WHERE a = $1 AND b = :name AND c = %s AND d = ?", {"t"}),
        ("SELECT a::numeric(10, 2), CAST(b AS varchar(20)) FROM t", {"t"}),
        ("SELECT * FROM generate_series(1, 3) AS g(n) JOIN t ON t.id = g.n", {"t"}),
        ("SELECT count(*), sum(x), coalesce(max(y), 0), lower(name) FROM t GROUP BY name", {"t"}),
        ("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", {"t"}),
        ("SELECT * FROM t WHERE id = ANY(ARRAY[1, 2]) AND tags @> ARRAY['x']", {"t"}),
        ("VALUES (1, 'a'), (2, 'b')", set()),
        ("SELECT 1", set()),
    ],
)
def test_reads_name_every_table_they_read(sql: str, tables: set[str]) -> None:
    shape = analyze(sql)
    assert (shape.kind, set(shape.tables), shape.cacheable, shape.unattributed) == (READ, tables, True, False)


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        (
            "WITH recent AS (SELECT * FROM orders WHERE at > ?) SELECT * FROM recent JOIN customers c ON 1=1",
            {"orders", "customers"},
        ),
        (
            "WITH a AS (SELECT * FROM x), b (n) AS MATERIALIZED (SELECT n FROM a JOIN y ON 1=1) "
            "SELECT * FROM b",
            {"x", "y"},
        ),
        (
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t",
            set(),
        ),
        (
            "WITH w AS (WITH inner_cte AS (SELECT * FROM deep) SELECT * FROM inner_cte) SELECT * FROM w",
            {"deep"},
        ),
    ],
)
def test_ctes_are_followed_and_their_names_are_not_tables(sql: str, tables: set[str]) -> None:
    shape = analyze(sql)
    assert (shape.kind, set(shape.tables), shape.cacheable) == (READ, tables, True)


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("INSERT INTO products (name, price) VALUES (?, ?)", {"products"}),
        ("insert into Products values (1)", {"products"}),
        ('INSERT INTO "Order Items" ("qty") VALUES (1) RETURNING id', {"order items"}),
        ("INSERT INTO archive SELECT * FROM products WHERE active = 0", {"archive"}),
        ("INSERT OR REPLACE INTO products (id, name) VALUES (1, 'x')", {"products"}),
        ("INSERT OR IGNORE INTO products (id) VALUES (1)", {"products"}),
        ("INSERT IGNORE INTO products (id) VALUES (1)", {"products"}),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b", {"t"}),
        ("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE b = VALUES(b)", {"t"}),
        ("REPLACE INTO products (id, name) VALUES (1, 'x')", {"products"}),
        ("UPSERT INTO products (id, name) VALUES (1, 'x')", {"products"}),
        (
            "UPDATE products SET price = price * 2 WHERE category_id IN (SELECT id FROM categories)",
            {"products"},
        ),
        ("UPDATE ONLY inventory AS i SET qty = 0 FROM orders o WHERE o.item = i.id", {"inventory"}),
        ("UPDATE OR IGNORE products SET name = ?", {"products"}),
        ("UPDATE a JOIN b ON a.id = b.id SET a.x = 1, b.y = 2", {"a", "b"}),
        ("UPDATE shop.products SET name = ?", {"products"}),
        ("DELETE FROM products WHERE id = ?", {"products"}),
        ("DELETE FROM ONLY products USING categories c WHERE c.id = products.category_id", {"products"}),
        ("DELETE t1, t2 FROM t1 JOIN t2 ON t1.id = t2.id", {"t1", "t2"}),
        (
            "MERGE INTO stock s USING deliveries d ON s.id = d.id WHEN MATCHED THEN UPDATE SET qty = d.qty",
            {"stock"},
        ),
        ("TRUNCATE TABLE a, b", {"a", "b"}),
        ("WITH gone AS (DELETE FROM products WHERE id = 1 RETURNING *) SELECT * FROM gone", {"products"}),
        ("WITH src AS (SELECT * FROM staging) INSERT INTO products SELECT * FROM src", {"products"}),
    ],
)
def test_writes_name_the_tables_they_write(sql: str, tables: set[str]) -> None:
    shape = analyze(sql)
    assert (shape.kind, set(shape.tables), shape.unattributed, shape.mutates) == (WRITE, tables, False, True)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM products FOR UPDATE",
        "SELECT * FROM products p WHERE id = 1 FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM products FOR SHARE",
        "SELECT nextval('products_id_seq')",
        "SELECT * FROM products ORDER BY random() LIMIT 1",
        "SELECT * FROM events WHERE at > now() - interval '1 day'",
        "SELECT * FROM events WHERE at > CURRENT_TIMESTAMP",
        "SELECT * FROM sqlite_master",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pg_stat_activity",
        "SELECT * FROM t TABLESAMPLE BERNOULLI (10)",
    ],
)
def test_volatile_reads_are_not_cached_and_change_nothing(sql: str) -> None:
    shape = analyze(sql)
    assert (shape.kind, shape.cacheable, shape.mutates) == (READ, False, False), shape.reason


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT create_user('bob')",  # a user function: it may write anything
        "SELECT * FROM my_set_returning_function(1)",
        "SELECT billing.charge(42)",
        'SELECT "MixedCase"(1) FROM t',
        "INSERT INTO audit (x) VALUES (log_and_return(1))",
        "SELECT * FROM a; DELETE FROM b",  # several statements
        "SELECT 1; SELECT 2",
        "CREATE TABLE x (id INTEGER)",
        "ALTER TABLE products ADD COLUMN sku TEXT",
        "DROP TABLE products",
        "CREATE VIEW v AS SELECT * FROM products",
        "SELECT * INTO copy FROM products",
        "TRUNCATE products CASCADE",
        "WITH x AS SELECT 1",  # a CTE this reader cannot follow
        "WITH x AS (SELECT 1",
        "SELECT 'unterminated",
        'SELECT * FROM t WHERE a = "unterminated',
        "VACUUM",
        "CALL do_things()",
        "DO $$ BEGIN DELETE FROM t; END $$",
        "PRAGMA foreign_keys = ON",
        "EXPLAIN ANALYZE DELETE FROM products",
        "BEGIN",
        "DELETE WHERE nothing",
    ],
)
def test_what_cannot_be_attributed_invalidates_the_whole_database(sql: str) -> None:
    shape = analyze(sql)
    assert (shape.mutates, shape.unattributed, shape.cacheable) == (True, True, False), shape


@pytest.mark.parametrize(
    "sql", ["SHOW search_path", "EXPLAIN SELECT * FROM t", "PRAGMA table_info(products)", ""]
)
def test_harmless_statements_are_not_cached_and_invalidate_nothing(sql: str) -> None:
    shape = analyze(sql)
    assert (shape.kind, shape.cacheable, shape.mutates) == (OTHER, False, False)


def test_a_table_named_like_a_keyword_inside_quotes_is_still_a_table() -> None:
    assert set(analyze('SELECT * FROM "select" JOIN "from" ON 1 = 1').tables) == {"select", "from"}


@pytest.mark.parametrize(
    ("sql", "kind", "tables", "cacheable", "mutates"),
    [
        # a CTE's name is no table where it is in scope; inside its own definition it is the table
        ("WITH x AS (SELECT * FROM x) SELECT * FROM x", READ, {"x"}, True, False),
        ("SELECT datetime('now'), date('now', '-1 day') FROM t", READ, {"t"}, False, False),
        ("SELECT * FROM t WHERE at > strftime('%s', 'now')", READ, {"t"}, False, False),
        ("SELECT uuid() FROM t", READ, {"t"}, False, False),
        ("UPDATE OR REPLACE products SET name = ?", WRITE, {"products"}, False, True),
        (
            "MERGE INTO stock s USING deliveries d ON s.id = d.id "
            "WHEN NOT MATCHED THEN INSERT (id, qty) VALUES (d.id, d.qty)",
            WRITE,
            {"stock"},
            False,
            True,
        ),
        (
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE nextval('s') > 0)",
            READ,
            {"t", "u"},
            False,
            False,
        ),
        ("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM products", OTHER, set(), False, True),
        ("PRAGMA index_list(products)", OTHER, set(), False, False),
        ("PRAGMA journal_mode", OTHER, set(), False, True),
        (
            "select * from Products p join CATEGORIES c on 1 = 1",
            READ,
            {"products", "categories"},
            True,
            False,
        ),
    ],
)
def test_what_the_parser_is_asked_to_get_right(
    sql: str, kind: str, tables: set[str], cacheable: bool, mutates: bool
) -> None:
    shape = analyze(sql)
    assert (shape.kind, set(shape.tables), shape.cacheable, shape.mutates) == (
        kind,
        tables,
        cacheable,
        mutates,
    )


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t WHERE id IN (SELECT audit(id) FROM u)",
        "UPDATE t SET x = (SELECT charge(1))",
        "WITH x AS (SELECT * FROM a) SELECT refill(x.id) FROM x",
    ],
)
def test_a_user_function_anywhere_in_a_statement_invalidates_the_whole_database(sql: str) -> None:
    assert analyze(sql).unattributed


@pytest.mark.parametrize(
    ("engine", "sql", "tables"),
    [
        ("mysql", 'SELECT * FROM `order items` WHERE name = "x"', {"order items"}),
        ("postgresql", 'SELECT * FROM "Order Items" WHERE x = $$ FROM y $$', {"order items"}),
        ("sqlite", "SELECT * FROM [Order Details]", {"order details"}),
        ("mssql", "SELECT TOP 5 * FROM [dbo].[Orders]", {"orders"}),
        ("firebird", "SELECT * FROM orders LIMIT 5", {"orders"}),  # Tina4 translates it to ROWS
    ],
)
def test_the_engines_own_dialect_is_read_first(engine: str, sql: str, tables: set[str]) -> None:
    from tina4_sidecar.client.sql_tables import dialect_of

    shape = analyze(sql, dialect_of(engine))
    assert (shape.kind, set(shape.tables), shape.cacheable) == (READ, tables, True), shape
