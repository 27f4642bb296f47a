-- explain_picture.sql: one Fashion-MNIST test image beside its integrated
-- gradients, as an SVG document (the picture in the README).
--
--   psql -At -v model=fashion_cnn -v id=1 -f scripts/explain_picture.sql > explain.svg
--
-- Left: the image (28 x 28 bytes of fashion_test.img, black on white).
-- Right: each pixel's attribution to the predicted class, red where it
-- raises the class's probability, blue where it lowers it, white near 0
-- (scaled by the largest magnitude).
WITH img AS (
    SELECT img, label, nn_classify(:'model', img) AS predicted
    FROM fashion_test WHERE id = :id
), attr AS (
    SELECT e.feature - 1 AS k, e.value, e.attribution,
           max(abs(e.attribution)) OVER () AS top
    FROM img, nn_explain(:'model', img.img) AS e
), cells AS (
    SELECT string_agg(format('<rect x="%s" y="%s" width="10" height="10" fill="rgb(%s,%s,%s)"/>',
                             20 + (k % 28) * 10, 50 + (k / 28) * 10,
                             255 - value::int, 255 - value::int, 255 - value::int), '') AS left_cells,
           string_agg(format('<rect x="%s" y="%s" width="10" height="10" fill="rgb(%s,%s,%s)"/>',
                             330 + (k % 28) * 10, 50 + (k / 28) * 10,
                             CASE WHEN attribution >= 0 THEN 255 ELSE 255 - (255 * -attribution / top)::int END,
                             255 - (255 * abs(attribution) / top)::int,
                             CASE WHEN attribution <= 0 THEN 255 ELSE 255 - (255 * attribution / top)::int END),
                      '') AS right_cells
    FROM attr
)
SELECT '<?xml version="1.0" encoding="UTF-8"?>' ||
       '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="630" height="370" viewBox="0 0 630 370" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">' ||
       '<rect width="100%" height="100%" fill="#ffffff"/>' ||
       format('<text x="160" y="34" text-anchor="middle">test image %s (class %s)</text>', :id, img.label) ||
       format('<text x="470" y="34" text-anchor="middle">attributions to class %s (%s)</text>',
              img.predicted, :'model') ||
       cells.left_cells || cells.right_cells ||
       '<rect x="20" y="50" width="280" height="280" fill="none" stroke="#999999"/>' ||
       '<rect x="330" y="50" width="280" height="280" fill="none" stroke="#999999"/>' ||
       '<text x="470" y="352" text-anchor="middle" font-size="11">red raises the class''s probability, blue lowers it</text>' ||
       '</svg>'
FROM img, cells;
