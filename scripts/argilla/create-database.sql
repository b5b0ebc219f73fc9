-- Argilla's own database in the compose stack's PostgreSQL (docker-compose.yml, profile
-- `argilla`). Run by the postgres image on its first start only.
CREATE DATABASE argilla;
