-- Locations group stations at one site (address, coordinates). Owners and tariffs come later.
CREATE TABLE locations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address     text NOT NULL DEFAULT '',
    city        text NOT NULL DEFAULT '',
    latitude    numeric(9, 6) CHECK (latitude BETWEEN -90 AND 90),
    longitude   numeric(9, 6) CHECK (longitude BETWEEN -180 AND 180),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX locations_name ON locations (name);

ALTER TABLE stations ADD COLUMN location_id uuid REFERENCES locations (id) ON DELETE SET NULL;
ALTER TABLE stations ADD COLUMN connector_count integer CHECK (connector_count BETWEEN 0 AND 10);
