//! A table per type family with edge values: the type matrix the pipeline and differential
//! tests share.

/// (table, definition, rows inserted before the snapshot, statements run while streaming).
pub type Family = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

pub const FAMILIES: &[Family] = &[
    (
        "ints",
        "id INT PRIMARY KEY, t TINYINT, tu TINYINT UNSIGNED, s SMALLINT, su SMALLINT UNSIGNED, \
         m MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, b BIGINT, bu BIGINT UNSIGNED",
        "(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, \
          -9223372036854775808, 18446744073709551615), (2, -1, 0, -1, 0, -1, 0, -1, 0, -1, 0), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO ints VALUES (4, 127, 1, 32767, 1, 8388607, 1, 2147483647, 1, \
              9223372036854775807, 9223372036854775808), (5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
            "UPDATE ints SET t = -1, bu = 18446744073709551615 WHERE id = 5",
            "DELETE FROM ints WHERE id = 2",
        ],
    ),
    (
        "decimals",
        "id INT PRIMARY KEY, w DECIMAL(65,30), z DECIMAL(10,0), s DECIMAL(5,2), \
         u DECIMAL(30,0) UNSIGNED",
        "(1, -99999999999999999999999999999999999.999999999999999999999999999999, -1234567890, \
          -0.05, 999999999999999999999999999999), (2, 0, 0, 0.00, 0), (3, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO decimals VALUES (4, 12345678901234567890.000000000000000000000000000001, \
              9999999999, 999.99, 1)",
            "UPDATE decimals SET s = -999.99, w = -0.000000000000000000000000000001 WHERE id = 2",
        ],
    ),
    (
        "floats",
        "id INT PRIMARY KEY, f FLOAT, d DOUBLE, fu FLOAT UNSIGNED NOT NULL DEFAULT 0",
        "(1, 0.1, 0.1, 0), (2, -3.40282e38, -1.7976931348623157e308, 1.5), \
         (3, 1.17549e-38, 4.9e-324, 3.40282e38), (4, NULL, NULL, 0)",
        &[
            "INSERT INTO floats VALUES (5, 123456.789, 123456789.123456789, 2.5)",
            "UPDATE floats SET f = -0.5, d = 2.2250738585072014e-308 WHERE id = 1",
        ],
    ),
    (
        "bits",
        "id INT PRIMARY KEY, b1 BIT(1), b7 BIT(7), b8 BIT(8), b33 BIT(33), b64 BIT(64)",
        "(1, 0, 0, 0, 0, 0), (2, 1, 127, 255, 8589934591, 18446744073709551615), \
         (3, NULL, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO bits VALUES (4, b'1', b'1010101', b'10000000', b'1', \
              b'1000000000000000000000000000000000000000000000000000000000000001')",
            "UPDATE bits SET b64 = 9223372036854775807 WHERE id = 1",
        ],
    ),
    (
        "temporal",
        "id INT PRIMARY KEY, t0 TIME, t3 TIME(3), t6 TIME(6), d DATE, dt2 DATETIME(2), \
         dt6 DATETIME(6), ts0 TIMESTAMP NULL, ts4 TIMESTAMP(4) NULL, y YEAR",
        "(1, '-838:59:59', '-838:59:58.999', '-838:59:59.000000', '1000-01-01', \
          '1000-01-01 00:00:00.01', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01', \
          '2038-01-19 03:14:07.9999', 1901), \
         (2, '838:59:59', '00:00:00.001', '-00:00:00.000001', '0000-00-00', \
          '0000-00-00 00:00:00', '2024-02-29 12:00:00.5', '0000-00-00 00:00:00', NULL, 0), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO temporal VALUES (4, '00:00:00', '-00:00:00.5', '-01:02:03.123456', \
              '9999-12-31', '2000-01-01 00:00:00.99', '1969-12-31 23:59:59.000001', \
              '2024-01-01 00:00:00', '2024-06-30 12:34:56.7891', 2155)",
            "UPDATE temporal SET t6 = '12:00:00.000001', d = '2024-02-29' WHERE id = 2",
        ],
    ),
    (
        "texts",
        "id INT PRIMARY KEY, c CHAR(5), v3 VARCHAR(20) CHARACTER SET utf8mb3, \
         l1 TEXT CHARACTER SET latin1, w VARCHAR(20) CHARACTER SET cp1251, \
         sj VARCHAR(20) CHARACTER SET sjis, gb VARCHAR(300) CHARACTER SET gbk, \
         m MEDIUMTEXT, j JSON",
        "(1, 'ab  ', 'ümlaut', 'café €', 'Привет', 'こんにちは', '中文', '🌊 wave', \
          '{\"a\": [1, 2.5, null]}'), (2, '', '', '', '', '', '', '', 'null'), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO texts VALUES (4, ' x', 'tab\\there', '\\0nul', 'ёЁ', 'ｶﾀｶﾅ', \
              REPEAT('字', 300), REPEAT('é', 70000), '[]')",
            "UPDATE texts SET l1 = 'ÀÿŒ‰', m = 'it''s \"quoted\"\\n' WHERE id = 2",
        ],
    ),
    (
        "binaries",
        "id INT PRIMARY KEY, b BINARY(4), vb VARBINARY(300), bl BLOB, lb LONGBLOB",
        "(1, 'a', x'00ff00', x'ff', x''), (2, x'00000000', x'', x'00', REPEAT(x'ff00', 40000)), \
         (3, NULL, NULL, NULL, NULL)",
        &[
            "INSERT INTO binaries VALUES (4, x'ffffffff', REPEAT(x'fe', 300), x'0a0d', 'text')",
            "UPDATE binaries SET b = x'0001' WHERE id = 1",
        ],
    ),
    (
        "labels",
        "id INT PRIMARY KEY, e ENUM('x','it''s','back\\\\slash','é',''), \
         s SET('a','b''c','d','e','f','g','h','i','j'), big ENUM('v0','v1','v2','v3','v4', \
         'v5','v6','v7','v8','v9','v10','v11','v12','v13','v14','v15','v16','v17','v18','v19', \
         'v20','v21','v22','v23','v24','v25','v26','v27','v28','v29','v30','v31','v32','v33', \
         'v34','v35','v36','v37','v38','v39','v40','v41','v42','v43','v44','v45','v46','v47', \
         'v48','v49','v50','v51','v52','v53','v54','v55','v56','v57','v58','v59','v60','v61', \
         'v62','v63','v64','v65','v66','v67','v68','v69','v70','v71','v72','v73','v74','v75', \
         'v76','v77','v78','v79','v80','v81','v82','v83','v84','v85','v86','v87','v88','v89', \
         'v90','v91','v92','v93','v94','v95','v96','v97','v98','v99','v100','v101','v102', \
         'v103','v104','v105','v106','v107','v108','v109','v110','v111','v112','v113','v114', \
         'v115','v116','v117','v118','v119','v120','v121','v122','v123','v124','v125','v126', \
         'v127','v128','v129','v130','v131','v132','v133','v134','v135','v136','v137','v138', \
         'v139','v140','v141','v142','v143','v144','v145','v146','v147','v148','v149','v150', \
         'v151','v152','v153','v154','v155','v156','v157','v158','v159','v160','v161','v162', \
         'v163','v164','v165','v166','v167','v168','v169','v170','v171','v172','v173','v174', \
         'v175','v176','v177','v178','v179','v180','v181','v182','v183','v184','v185','v186', \
         'v187','v188','v189','v190','v191','v192','v193','v194','v195','v196','v197','v198', \
         'v199','v200','v201','v202','v203','v204','v205','v206','v207','v208','v209','v210', \
         'v211','v212','v213','v214','v215','v216','v217','v218','v219','v220','v221','v222', \
         'v223','v224','v225','v226','v227','v228','v229','v230','v231','v232','v233','v234', \
         'v235','v236','v237','v238','v239','v240','v241','v242','v243','v244','v245','v246', \
         'v247','v248','v249','v250','v251','v252','v253','v254','v255','v256','v257'), \
         l ENUM('ä','ö') CHARACTER SET latin1",
        "(1, 'x', 'a,b''c', 'v0', 'ä'), (2, 'back\\\\slash', '', 'v257', 'ö'), \
         (3, NULL, NULL, NULL, NULL), (4, 'é', 'a,b''c,d,e,f,g,h,i,j', 'v256', 'ä')",
        &[
            "INSERT INTO labels VALUES (5, 'it''s', 'j', 'v128', 'ö'), (6, '', 'e,a', 'v1', 'ä')",
            "UPDATE labels SET e = 'é', s = 'd' WHERE id = 1",
            // Not a label: stored as index 0, which MariaDB reads back as ''.
            "INSERT INTO labels VALUES (7, 'nope', NULL, NULL, NULL)",
        ],
    ),
    (
        "shapes",
        "id INT PRIMARY KEY, p POINT, g GEOMETRY, poly POLYGON NOT NULL",
        "(1, POINT(1, 2), ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0.5)'), \
          ST_GeomFromText('POLYGON((0 0, 4 0, 4 4, 0 0))', 4326)), \
         (2, NULL, NULL, ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))'))",
        &[
            "INSERT INTO shapes VALUES (3, ST_GeomFromText('POINT(-1.5 1e10)', 3857), \
              ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1), LINESTRING(0 0, 1 1))'), \
              ST_GeomFromText('POLYGON((0 0, 2 0, 2 2, 0 0))'))",
            "UPDATE shapes SET p = POINT(3, 4) WHERE id = 2",
        ],
    ),
    // Column order matters to the table map: a YEAR column takes a signedness bit, and on
    // MariaDB a GEOMETRY column takes a character set entry, so the columns after them read
    // their neighbour's entry if the decoder miscounts.
    (
        "y1",
        "id INT PRIMARY KEY, y YEAR, a INT, b INT UNSIGNED, c TINYINT",
        "(1, 2024, -5, 4000000000, -1)",
        &["INSERT INTO y1 VALUES (2, 1901, 2147483647, 0, -128)"],
    ),
    (
        "g1",
        "id INT PRIMARY KEY, g POINT, c VARCHAR(20) CHARACTER SET latin1, \
         d VARCHAR(20) CHARACTER SET utf8mb4",
        "(1, POINT(1,2), 'café', 'naïve 😀')",
        &["UPDATE g1 SET c = 'crème', d = 'ж 🌊' WHERE id = 1"],
    ),
];
