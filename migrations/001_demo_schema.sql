-- Demo schema: a small shop. `orders` is the 9-column table the demo and benchmarks stream.
DROP DATABASE IF EXISTS shop;
CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;

CREATE TABLE shop.customers (
  id         INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email      VARCHAR(191) NOT NULL,
  name       VARCHAR(100) NOT NULL,
  country    CHAR(2)      NULL,
  created_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

CREATE TABLE shop.orders (
  id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id INT UNSIGNED  NOT NULL,
  status      VARCHAR(16)   NOT NULL,
  total       DECIMAL(12,2) NOT NULL,
  quantity    SMALLINT      NOT NULL,
  note        TEXT          NULL,
  ordered_on  DATE          NOT NULL,
  created_at  DATETIME(6)   NOT NULL,
  updated_at  TIMESTAMP(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;
