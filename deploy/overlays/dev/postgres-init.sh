#!/bin/sh
# Runs once, when the data volume is empty: one database and one owning role per service
# (database per service; neither role can open the other's database).
set -eu
credentials=/etc/postgres-credentials
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v catalog_password="$(cat "$credentials/CATALOG_DB_PASSWORD")" \
  -v enrollment_password="$(cat "$credentials/ENROLLMENT_DB_PASSWORD")" <<'SQL'
CREATE ROLE catalog LOGIN PASSWORD :'catalog_password';
CREATE DATABASE catalog OWNER catalog;
REVOKE ALL ON DATABASE catalog FROM PUBLIC;
CREATE ROLE enrollment LOGIN PASSWORD :'enrollment_password';
CREATE DATABASE enrollment OWNER enrollment;
REVOKE ALL ON DATABASE enrollment FROM PUBLIC;
SQL
