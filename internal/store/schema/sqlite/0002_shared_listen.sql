-- Version 2: PostgreSQL routes may share a listen address, and a route can be
-- its address's default route.
--
-- SQLite cannot drop a column's UNIQUE constraint, so routes is rebuilt. The
-- migration runs in a transaction with foreign keys on, where PRAGMA
-- foreign_keys cannot be turned off: dropping routes while route_allow still
-- referred to it would cascade and delete every allowlist. So both tables are
-- copied first, the old ones dropped child first, and the copies renamed;
-- renaming routes_v2 also rewrites route_allow_v2's reference to it.
-- Which routes may share an address (only PostgreSQL ones) and that there is
-- at most one default per address is checked by AddRoute.

CREATE TABLE routes_v2 (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE RESTRICT,
    target       TEXT    NOT NULL,
    listen       TEXT    NOT NULL,
    protocol     TEXT    NOT NULL,
    is_default   INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    max_sessions INTEGER NOT NULL DEFAULT 0 CHECK (max_sessions >= 0),
    created_at   TEXT    NOT NULL
) STRICT;

-- Every route so far had its address to itself, so each is its default.
INSERT INTO routes_v2 (id, name, agent_id, target, listen, protocol, is_default, max_sessions, created_at)
SELECT id, name, agent_id, target, listen, protocol, 1, max_sessions, created_at FROM routes;

CREATE TABLE route_allow_v2 (
    route_id INTEGER NOT NULL REFERENCES routes_v2 (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cidr     TEXT    NOT NULL,
    PRIMARY KEY (route_id, position)
) STRICT;

INSERT INTO route_allow_v2 (route_id, position, cidr) SELECT route_id, position, cidr FROM route_allow;

DROP TABLE route_allow;
DROP TABLE routes;
ALTER TABLE routes_v2 RENAME TO routes;
ALTER TABLE route_allow_v2 RENAME TO route_allow;

CREATE INDEX routes_agent_id ON routes (agent_id);
CREATE INDEX routes_listen ON routes (listen);
-- At most one default per address, whatever the code above it does.
CREATE UNIQUE INDEX routes_one_default ON routes (listen) WHERE is_default = 1;
