-- Operators read a station's anomalies newest first (the admin query ocppAnomalies(stationId)).
CREATE INDEX ocpp_anomalies_station ON ocpp_anomalies (station_id, id);
