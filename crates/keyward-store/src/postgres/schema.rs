//! The schema.

/// Schema migrations, as SQLite's (same tables, same columns, same count: version N
/// means the same schema in both); `keyward_schema.version` records how many ran.
/// Sortable text is `COLLATE "C"` so that listing order is bytewise, as in SQLite,
/// whatever the database's locale. Never edit one that has shipped: add another.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE keys (
    key_id               TEXT COLLATE "C" PRIMARY KEY,
    created_at           BIGINT NOT NULL,
    description          TEXT NOT NULL,
    state                TEXT COLLATE "C" NOT NULL,
    deletion_date        BIGINT,
    pending_window_days  BIGINT,
    rotation_period_days BIGINT,
    next_rotation        BIGINT,
    current_version      BIGINT NOT NULL,
    on_demand_rotations  BIGINT NOT NULL,
    policy               TEXT,
    destroyed            BOOLEAN NOT NULL,
    generation           BIGINT NOT NULL
);
CREATE TABLE key_versions (
    key_id      TEXT COLLATE "C" NOT NULL REFERENCES keys (key_id),
    version     BIGINT NOT NULL,
    material_id TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    rotation    TEXT,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE aliases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    key_id     TEXT COLLATE "C" NOT NULL REFERENCES keys (key_id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX aliases_by_key ON aliases (key_id);
CREATE TABLE tags (
    key_id    TEXT COLLATE "C" NOT NULL REFERENCES keys (key_id),
    tag_key   TEXT COLLATE "C" NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);
"#,
    r#"
CREATE TABLE access_keys (
    access_key_id TEXT COLLATE "C" PRIMARY KEY,
    principal     TEXT NOT NULL,
    wrapped       BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
"#,
    r#"
CREATE TABLE certificates (
    serial     TEXT COLLATE "C" PRIMARY KEY,
    subject    TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    revoked_at BIGINT,
    der        BYTEA NOT NULL
);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
"#,
    r#"
CREATE TABLE audit_batches (
    first_seq BIGINT PRIMARY KEY,
    last_seq  BIGINT NOT NULL,
    first_ms  BIGINT NOT NULL,
    last_ms   BIGINT NOT NULL,
    lines     TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    n    BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    line TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO changes (id, n) VALUES (1, 0);
"#,
];
