-- Read models: plain tables owned by the projections, each rebuildable from the log.

CREATE TABLE products (
    id          uuid        PRIMARY KEY,
    key         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL,
    link        text,
    archived    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE sales_channels (
    id          uuid        PRIMARY KEY,
    key         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL,
    link        text,
    archived    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE projects (
    id          uuid        PRIMARY KEY,
    product_id  uuid        NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL,
    archived    boolean     NOT NULL DEFAULT false,
    created_by  uuid        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX projects_product ON projects (product_id);

CREATE TABLE project_members (
    project_id uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('manager', 'performer')),
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE project_channels (
    project_id     uuid        NOT NULL,
    channel_id     uuid        NOT NULL,
    attached       boolean     NOT NULL,
    prompt         text        NOT NULL,
    prompt_version integer     NOT NULL,
    attached_at    timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (project_id, channel_id)
);
CREATE INDEX project_channels_channel ON project_channels (channel_id);

CREATE TABLE channel_prompt_versions (
    project_id uuid        NOT NULL,
    channel_id uuid        NOT NULL,
    version    integer     NOT NULL,
    prompt     text        NOT NULL,
    created_by text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, channel_id, version)
);

CREATE TABLE client_requests (
    id                   uuid        PRIMARY KEY,
    project_id           uuid        NOT NULL,
    channel_id           uuid        NOT NULL,
    client_id            text,
    source               text        NOT NULL,
    -- [{key, value}] in the client's column order, and [{key, description}].
    client_data          jsonb       NOT NULL,
    client_data_decoding jsonb       NOT NULL,
    -- The client's cluster (`super_clust`), pulled out for filters and statistics.
    cluster              text,
    status               text        NOT NULL DEFAULT 'initial',
    outcome              text        NOT NULL DEFAULT 'undefined',
    created_by           text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX client_requests_channel ON client_requests (project_id, channel_id, created_at, id);
CREATE INDEX client_requests_client ON client_requests (project_id, client_id);

CREATE TABLE users (
    id          uuid        PRIMARY KEY,
    email       text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    position    text        NOT NULL,
    subdivision text        NOT NULL,
    is_admin    boolean     NOT NULL,
    active      boolean     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
