-- Version 1: agents, routes and each route's client allowlist.
--
-- Names are UNIQUE under SQLite's default BINARY collation, so they are
-- case-sensitive and sort in byte order. Timestamps are UTC text in the fixed
-- width form 2006-01-02T15:04:05.000000Z, which sorts like the time it names.
-- Do not edit a released migration: add the next numbered file instead.

CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    fingerprint TEXT    NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at  TEXT    NOT NULL
) STRICT;

CREATE TABLE routes (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    -- RESTRICT backs up RemoveAgent's own check: an agent still named by a
    -- route can never be deleted, even by a buggy query.
    agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    target       TEXT    NOT NULL,
    listen       TEXT    NOT NULL UNIQUE,
    protocol     TEXT    NOT NULL,
    max_sessions INTEGER NOT NULL DEFAULT 0 CHECK (max_sessions >= 0),
    created_at   TEXT    NOT NULL
) STRICT;

CREATE INDEX routes_agent_id ON routes (agent_id);

CREATE TABLE route_allow (
    route_id INTEGER NOT NULL REFERENCES routes (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cidr     TEXT    NOT NULL,
    PRIMARY KEY (route_id, position)
) STRICT;
