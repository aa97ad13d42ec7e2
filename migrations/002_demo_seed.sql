-- Demo seed: 1,000 customers and 20,000 orders (MariaDB's built-in seq_1_to_N tables).
USE shop;
INSERT INTO shop.customers (email, name, country, created_at)
SELECT CONCAT('customer', seq, '@example.com'),
       CONCAT('Customer ', seq),
       ELT(1 + seq % 5, 'DE', 'FR', 'US', 'JP', 'BR'),
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE
FROM seq_1_to_1000;

INSERT INTO shop.orders (customer_id, status, total, quantity, note, ordered_on, created_at)
SELECT 1 + seq % 1000,
       ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'),
       ROUND(seq * 1.37 % 1000, 2),
       1 + seq % 9,
       IF(seq % 7 = 0, NULL, CONCAT('order ', seq, ' – gift wrap ✓')),
       DATE '2024-01-01' + INTERVAL (seq % 365) DAY,
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq * 37 % 1000000) MICROSECOND
FROM seq_1_to_20000;
