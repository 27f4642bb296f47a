#!/usr/bin/env bash
# nn_plot in a real browser: the SVG of a model trained in two fits (with
# validation data, so four curves and a version line) is well-formed XML,
# and Chromium draws it with every curve's pixels there
# (plot_render.sh checks the screenshot).
. "$(dirname "$0")/lib.sh"

it_setup_db
it_make_data pd 600
it_create_model pm
for seed in 1 2; do
	it_psql -c "SELECT count(*) FROM nn_fit('pm', 'SELECT x, label FROM pd',
		epochs => 4, batch_size => 32, learning_rate => 0.003,
		validation_split => 0.25, seed => $seed, verbose => false)" >/dev/null ||
		it_fail "nn_fit $seed of pm"
done

it_psql -c "SELECT nn_plot('pm')" >"$IT_TMP/pm.svg" ||
	it_fail "nn_plot('pm')"
it_check "the SVG is well-formed XML (xmllint)" \
	xmllint --noout "$IT_TMP/pm.svg"
it_expect_value "t|t" "it is titled with the model and version and marks the second fit" -- \
	"SELECT strpos(s, '<title>pm, version 3</title>') > 0, strpos(s, 'new version') > 0
	 FROM (SELECT nn_plot('pm') AS s) p"
if out=$(bash "$(dirname "$0")/plot_render.sh" "$IT_TMP/pm.svg" "$IT_TMP/pm.png" 2>&1); then
	it_pass "Chromium renders it with every curve's pixels"
else
	it_fail "Chromium's rendering"
fi
printf '%s\n' "$out" | sed 's/^/    | /'

it_expect_error 55000 "a version without history is refused" -- \
	"SELECT nn_plot('pm', 1)"
it_expect_error 42704 "an unknown model is refused" -- \
	"SELECT nn_plot('nosuch')"
it_finish
