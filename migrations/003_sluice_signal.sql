-- Sluice's signal table in the source database (`source.signal_table`, default
-- sluice.sluice_signal); `sluice setup` runs the same statements for the configured name.
-- Incremental snapshots write their low/high watermarks here (one row per Sluice instance,
-- updated), and an INSERT of an execute-snapshot row requests a snapshot while streaming:
--   INSERT INTO sluice.sluice_signal (id, type, data) VALUES ('my-id', 'execute-snapshot',
--     '{"data-collections": ["shop.orders"], "additional-conditions":
--       [{"data-collection": "shop.orders", "filter": "id > 1000"}]}');
-- The Sluice user needs: GRANT INSERT, UPDATE ON sluice.sluice_signal TO 'sluice'@'%';
CREATE DATABASE IF NOT EXISTS `sluice`;
CREATE TABLE IF NOT EXISTS `sluice`.`sluice_signal` (
  id   VARCHAR(64) NOT NULL PRIMARY KEY,
  type VARCHAR(32) NOT NULL,
  data TEXT        NULL
) ENGINE = InnoDB;
