"""What the query cache knows about SQL functions and catalogs: which calls are pure (a result
may be cached), which are volatile (never cached, but they change no table), which SQLite pragmas
only read, and which schemas are the engines' own catalogs.

A function in neither list may be a user function with side effects (``SELECT create_user(...)``):
the statement calling it is not cached and invalidates the whole database (``sql_tables``)."""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Functions whose result depends only on their arguments (and the rows read): safe to cache.
PURE = _words(
    """count sum avg min max total group_concat string_agg array_agg json_agg jsonb_agg
    json_object_agg jsonb_object_agg json_group_array json_group_object bool_and bool_or every
    bit_and bit_or stddev stddev_pop stddev_samp variance var_pop var_samp median mode
    percentile_cont percentile_disc corr covar_pop covar_samp regr_slope regr_intercept
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    coalesce nullif ifnull iif if isnull nvl greatest least cast try_cast convert extract
    date_part date_trunc substring substr trim ltrim rtrim btrim position overlay lower upper length
    char_length character_length octet_length bit_length concat concat_ws replace reverse repeat lpad
    rpad left right split_part strpos instr printf format quote quote_ident quote_literal
    quote_nullable translate initcap ascii chr char unicode hex unhex md5 sha1 sha224 sha256 sha384
    sha512 encode decode to_hex regexp_replace regexp_match regexp_matches regexp_split_to_array
    regexp_split_to_table regexp_like regexp_substr regexp_count starts_with like glob soundex
    abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 log2 mod div pi
    degrees radians sin cos tan asin acos atan atan2 sinh cosh tanh width_bucket gcd lcm factorial
    to_char to_date to_number to_timestamp make_date make_time make_timestamp make_timestamptz
    make_interval age justify_days justify_hours justify_interval isfinite date time datetime
    julianday strftime unixepoch timediff timezone typeof zeroblob likelihood likely unlikely
    json jsonb json_extract json_array json_object json_array_length json_type json_valid json_quote
    json_insert json_replace json_set json_remove json_patch json_each json_tree jsonb_each
    jsonb_array_elements json_array_elements jsonb_array_elements_text json_array_elements_text
    jsonb_object_keys json_object_keys json_build_object jsonb_build_object json_build_array
    jsonb_build_array to_json to_jsonb row_to_json array_to_json jsonb_set jsonb_insert
    jsonb_strip_nulls jsonb_pretty jsonb_typeof json_typeof jsonb_extract_path
    jsonb_extract_path_text json_extract_path json_extract_path_text jsonb_path_query
    jsonb_path_exists jsonb_path_match json_strip_nulls json_populate_record jsonb_populate_record
    array_length array_position array_positions array_remove array_replace array_cat array_append
    array_prepend array_dims array_lower array_upper array_ndims array_to_string string_to_array
    unnest cardinality generate_series generate_subscripts range_merge lower_inc upper_inc isempty
    numeric decimal varchar char nchar nvarchar character float double real int integer bigint
    smallint timestamp timestamptz interval bit varbit text bytea boolean uuid values"""
)

# Functions that change nothing in tables but whose result must not be cached.
VOLATILE = _words(
    """random randomblob rand uuid gen_random_uuid uuid_generate_v1 uuid_generate_v4 newid
    now clock_timestamp statement_timestamp transaction_timestamp timeofday localtime localtimestamp
    current_timestamp current_date current_time sysdate getdate utc_timestamp
    nextval setval currval lastval last_insert_rowid last_insert_id changes total_changes
    txid_current txid_current_if_assigned pg_current_xact_id pg_backend_pid inet_client_addr
    inet_client_port current_setting pg_sleep sleep pg_advisory_lock pg_advisory_xact_lock
    pg_advisory_unlock pg_advisory_unlock_all pg_try_advisory_lock pg_try_advisory_xact_lock
    pg_advisory_lock_shared pg_try_advisory_lock_shared pg_advisory_xact_lock_shared
    pg_try_advisory_xact_lock_shared pg_advisory_unlock_shared setseed sqlite_version version
    current_user session_user user current_database current_schema current_schemas
    pg_postmaster_start_time"""
)

VOLATILE_KINDS = frozenset(
    {
        "Rand",
        "Randn",
        "Uuid",
        "CurrentTimestamp",
        "CurrentDate",
        "CurrentTime",
        "CurrentDatetime",
        "CurrentTimestampLTZ",
        "Localtime",
        "Localtimestamp",
        "CurrentUser",
        "CurrentSchema",
        "CurrentCatalog",
        "SessionUser",
        "CurrentVersion",
        "NextValueFor",
        "UnixSeconds",
    }
)
"""sqlglot's expression classes for calls that ``VOLATILE`` names (``now()`` parses as
``CurrentTimestamp``, ``random()`` as ``Rand``): every other typed call is a built-in of known
meaning, pure, unless it is asked about ``'now'`` (SQLite's ``datetime('now')``)."""

READ_PRAGMAS = _words(
    """table_info table_xinfo table_list index_list index_info index_xinfo foreign_key_list
    database_list collation_list compile_options function_list module_list pragma_list
    integrity_check quick_check foreign_key_check"""
)

SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "sys", "mysql", "performance_schema"})
SYSTEM_PREFIXES = ("pg_", "sqlite_")
