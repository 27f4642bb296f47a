--
-- plot: nn_plot draws a version's learning curves, and those of the
-- versions it was trained from, as an SVG document
--
SET nnpg.threads = 1;
SET search_path = public;

SELECT nn_create('plot_net', '[{"type": "dense", "units": 4, "activation": "tanh"},
                               {"type": "dense", "units": 2, "activation": "softmax"}]',
                 '{2}', 1);
-- created but not trained: nothing to plot
SELECT nn_plot('plot_net');
SELECT count(*) FROM nn_fit('plot_net', 'SELECT x, y FROM blobs', epochs => 3,
                            validation_split => 0.2, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('plot_net', 'SELECT x, y FROM blobs', epochs => 2, seed => 2,
                            verbose => false);
-- a well-formed SVG document, titled with the model and version; version
-- 3 draws its own epochs after version 2's, with a line where it started;
-- the validation curves are there while some epoch has them
SELECT xml_is_well_formed_document(s) AS well_formed,
       s LIKE '<?xml version="1.0" encoding="UTF-8"?>%<svg xmlns="http://www.w3.org/2000/svg"%' AS svg,
       strpos(s, '<title>plot_net, version 3</title>') > 0 AS titled,
       strpos(s, 'new version') > 0 AS version_line,
       strpos(s, 'validation loss') > 0 AS val_loss,
       strpos(s, 'training accuracy') > 0 AS accuracy
FROM (SELECT nn_plot('plot_net') AS s) p;
-- version 2 alone: no version line
SELECT xml_is_well_formed_document(s) AS well_formed,
       strpos(s, '<title>plot_net, version 2</title>') > 0 AS titled,
       strpos(s, 'new version') = 0 AS no_version_line
FROM (SELECT nn_plot('plot_net', 2) AS s) p;
-- the same history, the same bytes
SELECT nn_plot('plot_net') = nn_plot('plot_net') AS repeatable;
-- a name that needs escaping
SELECT nn_create('plot <&> "net"', '[{"type": "dense", "units": 2, "activation": "softmax"}]',
                 '{2}', 1);
SELECT count(*) FROM nn_fit('plot <&> "net"', 'SELECT x, y FROM blobs', epochs => 1,
                            seed => 1, verbose => false);
SELECT xml_is_well_formed_document(s) AS well_formed,
       strpos(s, '<title>plot &lt;&amp;&gt; &quot;net&quot;, version 2</title>') > 0 AS escaped
FROM (SELECT nn_plot('plot <&> "net"') AS s) p;
SELECT nn_drop('plot <&> "net"');

-- bad input
SELECT nn_plot(NULL);
SELECT nn_plot('plot_nosuch');
SELECT nn_plot('plot_net', 7);
SELECT nn_plot('plot_net', 1);

SELECT nn_drop('plot_net');
