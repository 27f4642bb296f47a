/*
 * test_plot.c: the learning-curve SVG of nn_plot_render (src/core/plot.c).
 *
 * Every document is parsed with libxml2 (well-formed, no network, no
 * recovery) and read back through XPath: the root's SVG attributes, the
 * title text after escaping, the legend entries and curves present, tick
 * labels, polylines and markers.  Also: bad titles and values, bounds, a
 * failing allocator, extreme magnitudes, and identical bytes on a second
 * run and under a locale with a decimal comma (skipped when the machine has
 * none: LOCPATH can point at one made by localedef).
 */
#include <locale.h>
#include <math.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "nn_test.h"

#define SVG_NS "http://www.w3.org/2000/svg"

/* XPath to a panel ("loss", "accuracy") and to its parts */
#define PANEL(m)	"//svg:g[@id='panel-" m "']"
#define FRAME(m)	PANEL(m) "/svg:rect[@class='frame']"
#define X_TICKS(m)	PANEL(m) "/svg:g[@class='ticks-x']"
#define LEGEND(m)	PANEL(m) "//svg:g[@class='legend-entry']"

/* The four series of a history, NULL for absent ones. */
typedef struct hist
{
	double		loss[64];
	double		accuracy[64];
	double		val_loss[64];
	double		val_accuracy[64];
	nn_plot_history h;
} hist;

/* n epochs of made-up curves; each flag says whether a series is given. */
static void
hist_make(hist *t, int32_t n, bool acc, bool val)
{
	memset(t, 0, sizeof(*t));
	for (int32_t e = 0; e < n; e++)
	{
		t->loss[e] = 1.0 / (e + 1) + 0.2;
		t->val_loss[e] = 0.9 / (e + 1) + 0.3;
		t->accuracy[e] = 0.9 - 0.4 / (e + 1);
		t->val_accuracy[e] = 0.85 - 0.3 / (e + 1);
	}
	t->h.loss = t->loss;
	t->h.val_loss = val ? t->val_loss : NULL;
	t->h.accuracy = acc ? t->accuracy : NULL;
	t->h.val_accuracy = acc && val ? t->val_accuracy : NULL;
	t->h.n_epochs = n;
}

/* Render; fails the test on an error.  malloc'd. */
static char *
render(const char *title, const nn_plot_history *h, size_t *len)
{
	nn_error	err;
	char	   *svg = NULL;
	size_t		n = 0;

	assert_ok(nn_plot_render(&svg, &n, title, h, &nn_malloc_alloc, &err), &err);
	assert_non_null(svg);
	assert_int_equal(strlen(svg), n);
	if (len)
		*len = n;
	return svg;
}

/* Parse strictly (no recovery, entities, DTD or network). */
static xmlDocPtr
parse(const char *svg)
{
	xmlDocPtr	doc = xmlReadMemory(svg, (int) strlen(svg), "plot.svg", NULL,
									XML_PARSE_NONET);

	if (doc == NULL)
		fail_msg("the SVG is not well-formed XML:\n%.2000s", svg);
	return doc;
}

/* The nodes of an XPath expression, svg: bound to the SVG namespace. */
static xmlXPathObjectPtr
query(xmlDocPtr doc, const char *expr)
{
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr r;

	xmlXPathRegisterNs(ctx, BAD_CAST "svg", BAD_CAST SVG_NS);
	r = xmlXPathEvalExpression(BAD_CAST expr, ctx);
	xmlXPathFreeContext(ctx);
	if (r == NULL)
		fail_msg("bad XPath expression %s", expr);
	return r;
}

/* The number of nodes an expression selects. */
static int
count(xmlDocPtr doc, const char *expr)
{
	xmlXPathObjectPtr r = query(doc, expr);
	int			n = r->nodesetval ? r->nodesetval->nodeNr : 0;

	xmlXPathFreeObject(r);
	return n;
}

/*
 * The string values of the selected nodes (text content or attribute
 * value), joined by "|", into buf.
 */
static void
strings(xmlDocPtr doc, const char *expr, char *buf, size_t size)
{
	xmlXPathObjectPtr r = query(doc, expr);
	int			n = r->nodesetval ? r->nodesetval->nodeNr : 0;
	size_t		used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n; i++)
	{
		xmlChar    *s = xmlNodeGetContent(r->nodesetval->nodeTab[i]);

		used += snprintf(buf + used, size - used, "%s%s", i ? "|" : "",
						 (const char *) s);
		xmlFree(s);
		assert_true(used < size);
	}
	xmlXPathFreeObject(r);
}

/* Assert the string values of an expression. */
static void
assert_strings(xmlDocPtr doc, const char *expr, const char *want)
{
	char		buf[4096];

	strings(doc, expr, buf, sizeof(buf));
	if (strcmp(buf, want) != 0)
		fail_msg("%s: got \"%s\", expected \"%s\"", expr, buf, want);
}

/* A number of the document (an attribute, say). */
static double
number(xmlDocPtr doc, const char *expr)
{
	char		buf[64];
	char		xp[256];

	snprintf(xp, sizeof(xp), "string(%s)", expr);
	{
		xmlXPathObjectPtr r = query(doc, xp);

		snprintf(buf, sizeof(buf), "%s", (const char *) r->stringval);
		xmlXPathFreeObject(r);
	}
	return strtod(buf, NULL);
}

/* Characters that must never reach an SVG number. */
static void
assert_numbers_finite(const char *svg)
{
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));
	assert_null(strstr(svg, "NaN"));
	assert_null(strstr(svg, "Inf"));
}

/* The y tick labels of a panel, "|"-joined. */
static void
assert_y_ticks(xmlDocPtr doc, const char *panel, const char *want)
{
	char		xp[256];

	snprintf(xp, sizeof(xp),
			 "//svg:g[@id='panel-%s']/svg:g[@class='ticks-y']/svg:text",
			 panel);
	assert_strings(doc, xp, want);
}

/* ---------- tests ---------- */

/* Root element, namespace, size and viewBox, on a full history. */
static void
test_wellformed(void **state)
{
	hist		t;
	char	   *svg;
	xmlDocPtr	doc;
	xmlNodePtr	root;
	char		vb[64];

	(void) state;
	hist_make(&t, 10, true, true);
	svg = render("clf, version 1", &t.h, NULL);
	assert_numbers_finite(svg);
	doc = parse(svg);
	root = xmlDocGetRootElement(doc);
	assert_string_equal((const char *) root->name, "svg");
	assert_non_null(root->ns);
	assert_string_equal((const char *) root->ns->href, SVG_NS);
	assert_strings(doc, "/svg:svg/@version", "1.1");
	assert_strings(doc, "/svg:svg/@width", "720");
	snprintf(vb, sizeof(vb), "0 0 720 %d",
			 (int) number(doc, "/svg:svg/@height"));
	assert_strings(doc, "/svg:svg/@viewBox", vb);
	assert_int_equal(count(doc, "/svg:svg/svg:title"), 1);
	assert_int_equal(count(doc, "//svg:g[@class='panel']"), 2);
	/* both panels have axis titles */
	assert_strings(doc, "//svg:text[@class='axis-title']",
				   "loss|epoch|accuracy|epoch");
	xmlFreeDoc(doc);
	free(svg);
}

/* A hostile title is text, in <title> and the heading, nothing more. */
static void
test_title_escaping(void **state)
{
	static const char title[] =
		"</text><script>alert(\"x&y\")</script> 'q' ]]> <!-- &amp; "
		"\x01 \xEF\xBF\xBF caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC";
	/* control characters and U+FFFF, not allowed in XML, become U+FFFD */
	static const char shown[] =
		"</text><script>alert(\"x&y\")</script> 'q' ]]> <!-- &amp; "
		"\xEF\xBF\xBD \xEF\xBF\xBD caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC";
	hist		t;
	char	   *svg;
	xmlDocPtr	doc;

	(void) state;
	hist_make(&t, 3, false, false);
	svg = render(title, &t.h, NULL);
	assert_null(strstr(svg, "<script"));
	assert_null(strstr(svg, "\x01"));
	doc = parse(svg);
	assert_int_equal(count(doc, "//svg:script"), 0);
	assert_strings(doc, "/svg:svg/svg:title", shown);
	assert_strings(doc, "//svg:text[@id='title']", shown);
	xmlFreeDoc(doc);
	free(svg);
}

/* Malformed UTF-8 and over-long titles fail; a long one is shortened. */
static void
test_title_limits(void **state)
{
	static const char *const bad[] = {
		"ab\xC3(",				/* truncated */
		"\xC0\xAF",				/* overlong '/' */
		"\xED\xA0\x80",			/* a surrogate */
		"\xF4\x90\x80\x80",		/* beyond U+10FFFF */
		"\xFF",
	};
	char		longest[NN_PLOT_MAX_TITLE + 2];
	char		buf[4096];
	nn_error	err;
	char	   *svg = NULL;
	hist		t;
	xmlDocPtr	doc;

	(void) state;
	hist_make(&t, 2, false, false);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		assert_status(nn_plot_render(&svg, NULL, bad[i], &t.h,
									 &nn_malloc_alloc, &err),
					  NN_ERR_DATA, &err);
		assert_null(svg);
		assert_string_equal(err.message, "plot title is not valid UTF-8");
	}
	memset(longest, 'x', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	assert_status(nn_plot_render(&svg, NULL, longest, &t.h, &nn_malloc_alloc,
								 &err), NN_ERR_LIMIT, &err);
	assert_string_equal(err.message, "plot title is too long");

	/* the longest allowed: all of it in <title>, the start in the heading */
	longest[NN_PLOT_MAX_TITLE] = '\0';
	svg = render(longest, &t.h, NULL);
	doc = parse(svg);
	strings(doc, "/svg:svg/svg:title", buf, sizeof(buf));
	assert_int_equal(strlen(buf), NN_PLOT_MAX_TITLE);
	strings(doc, "//svg:text[@id='title']", buf, sizeof(buf));
	assert_int_equal(strlen(buf), 99 + 3);	/* and an ellipsis */
	assert_string_equal(buf + 99, "\xE2\x80\xA6");
	assert_strings(doc, "//svg:text[@id='title']/@font-size", "10");
	xmlFreeDoc(doc);
	free(svg);
}

/* A curve for each series' legend entry, and no other. */
static void
assert_curves(xmlDocPtr doc)
{
	xmlXPathObjectPtr r = query(doc, "//svg:g[@class='legend-entry']/@id");
	int			curves = 0;

	for (int i = 0; r->nodesetval && i < r->nodesetval->nodeNr; i++)
	{
		xmlChar    *id = xmlNodeGetContent(r->nodesetval->nodeTab[i]);
		char		xp[256];

		if (strncmp((const char *) id, "legend-version-start", 20) != 0)
		{
			snprintf(xp, sizeof(xp), "//svg:g[@class='curve'][@id='curve-%s']",
					 (const char *) id + strlen("legend-"));
			assert_int_equal(count(doc, xp), 1);
			curves++;
		}
		xmlFree(id);
	}
	xmlXPathFreeObject(r);
	assert_int_equal(count(doc, "//svg:g[@class='curve']"), curves);
}

/* Legend entries and curves of a history, as "|"-joined ids. */
static void
assert_legend(const nn_plot_history *h, const char *loss_ids,
			  const char *acc_ids)
{
	char	   *svg = render("m", h, NULL);
	xmlDocPtr	doc = parse(svg);

	assert_strings(doc, LEGEND("loss") "/@id", loss_ids);
	if (acc_ids)
		assert_strings(doc, LEGEND("accuracy") "/@id", acc_ids);
	else
		assert_int_equal(count(doc, PANEL("accuracy")), 0);
	assert_curves(doc);
	xmlFreeDoc(doc);
	free(svg);
}

/* The legend lists exactly the series that have a value. */
static void
test_legend(void **state)
{
	hist		t;
	int32_t		starts[] = {4};
	double		none[10];

	(void) state;
	for (int i = 0; i < 10; i++)
		none[i] = NAN;

	hist_make(&t, 10, false, false);
	assert_legend(&t.h, "legend-loss", NULL);
	hist_make(&t, 10, false, true);
	assert_legend(&t.h, "legend-loss|legend-val_loss", NULL);
	hist_make(&t, 10, true, true);
	t.h.starts = starts;
	t.h.n_starts = 1;
	assert_legend(&t.h,
				  "legend-loss|legend-val_loss|legend-version-start-loss",
				  "legend-accuracy|legend-val_accuracy"
				  "|legend-version-start-accuracy");

	/* all-NaN series are absent: no entry, no curve */
	hist_make(&t, 10, true, true);
	t.h.val_loss = none;
	t.h.accuracy = none;
	assert_legend(&t.h, "legend-loss", "legend-val_accuracy");
	t.h.val_accuracy = none;
	assert_legend(&t.h, "legend-loss", NULL);
}

/* One epoch: a marker, no line, one x tick, the point mid-axis. */
static void
test_single_epoch(void **state)
{
	hist		t;
	char	   *svg;
	xmlDocPtr	doc;
	double		left;
	double		width;

	(void) state;
	hist_make(&t, 1, true, true);
	svg = render("one", &t.h, NULL);
	assert_numbers_finite(svg);
	doc = parse(svg);
	assert_int_equal(count(doc, "//svg:polyline"), 0);
	assert_int_equal(count(doc, "//svg:g[@id='markers-loss']/svg:circle"), 1);
	assert_int_equal(count(doc, "//svg:g[@id='markers-val_loss']/svg:rect"), 1);
	assert_int_equal(count(doc, "//svg:g[@id='markers-accuracy']/svg:circle"),
					 1);
	assert_strings(doc, X_TICKS("loss") "/svg:text", "1");
	left = number(doc, FRAME("loss") "/@x");
	width = number(doc, FRAME("loss") "/@width");
	assert_scalar_close("cx", number(doc, "//svg:g[@id='markers-loss']"
									 "/svg:circle/@cx"),
						left + width / 2, 0.011, 0);
	xmlFreeDoc(doc);
	free(svg);

	/* no epochs at all: a panel that says so */
	hist_make(&t, 0, false, false);
	svg = render("none", &t.h, NULL);
	doc = parse(svg);
	assert_strings(doc, PANEL("loss") "/svg:text[not(@class)]",
				   "no epochs recorded");
	assert_y_ticks(doc, "loss", "");
	xmlFreeDoc(doc);
	free(svg);
}

/* The vertices of a polyline: the commas of its points. */
static int
vertices(xmlDocPtr doc, const char *polyline)
{
	char		buf[4096];
	char		xp[256];
	int			n = 0;

	snprintf(xp, sizeof(xp), "%s/@points", polyline);
	strings(doc, xp, buf, sizeof(buf));
	for (const char *p = buf; *p; p++)
		n += *p == ',';
	return n;
}

/* Missing values break the line; markers depend on the epoch count. */
static void
test_nan_gaps(void **state)
{
	hist		t;
	char	   *svg;
	xmlDocPtr	doc;
	double		v11[11] = {1, 2, NAN, 3, 4, 5, NAN, NAN, 6, NAN, 7};

	(void) state;
	hist_make(&t, 11, false, false);
	memcpy(t.loss, v11, sizeof(v11));
	svg = render("gaps", &t.h, NULL);
	assert_numbers_finite(svg);
	doc = parse(svg);
	assert_int_equal(count(doc, "//svg:g[@id='curve-loss']/svg:polyline"), 2);
	assert_int_equal(count(doc, "//svg:g[@id='markers-loss']/svg:circle"), 7);
	assert_int_equal(vertices(doc, "//svg:g[@id='curve-loss']/svg:polyline[1]"),
					 2);
	assert_int_equal(vertices(doc, "//svg:g[@id='curve-loss']/svg:polyline[2]"),
					 3);
	xmlFreeDoc(doc);
	free(svg);

	/* 40 epochs: markers only where a point has no neighbour (epoch 23) */
	hist_make(&t, 40, false, false);
	t.loss[21] = NAN;
	t.loss[23] = NAN;
	svg = render("long", &t.h, NULL);
	doc = parse(svg);
	assert_int_equal(count(doc, "//svg:g[@id='curve-loss']/svg:polyline"), 2);
	assert_int_equal(count(doc, "//svg:g[@id='markers-loss']/svg:circle"), 1);
	xmlFreeDoc(doc);
	free(svg);
}

/* Render a loss-only (or accuracy-only) history of the given values. */
static xmlDocPtr
doc_of(const double *v, int32_t n, bool accuracy, char **svg)
{
	hist		t;
	double		none[64];

	hist_make(&t, n, false, false);
	for (int32_t i = 0; i < n; i++)
		none[i] = NAN;
	memcpy(accuracy ? t.accuracy : t.loss, v, n * sizeof(double));
	if (accuracy)
	{
		t.h.accuracy = t.accuracy;
		t.h.loss = none;
	}
	*svg = render("ticks", &t.h, NULL);
	assert_numbers_finite(*svg);
	return parse(*svg);
}

/* Ticks at 1, 2 or 5 times a power of ten, labelled exactly. */
static void
test_ticks(void **state)
{
	static const struct
	{
		double		v[4];
		bool		accuracy;
		const char *want;
	}			cases[] = {
		{{0.23, 0.87, 0.5, 0.4}, false, "0.2|0.3|0.4|0.5|0.6|0.7|0.8|0.9"},
		{{0, 1.2e8, 3e7, 5e7}, false,
		"0|2e+07|4e+07|6e+07|8e+07|1e+08|1.2e+08"},
		{{1e-8, 5e-8, 2e-8, 3e-8}, false, "1e-08|2e-08|3e-08|4e-08|5e-08"},
		{{1e5, 1e6, 5e5, 5e5}, false, "0|2e+05|4e+05|6e+05|8e+05|1e+06"},
		{{-3.7, 12.1, 0, 1}, false, "-5|0|5|10|15"},
		{{0.5, 0.5, 0.5, 0.5}, false, "0.2|0.3|0.4|0.5|0.6|0.7|0.8"},
		{{0, 0, 0, 0}, false, "-1.0|-0.5|0.0|0.5|1.0"},
		{{1, 1, 1, 1}, true, "0.5|0.6|0.7|0.8|0.9|1.0"},
		{{0.81, 0.93, 0.9, 0.85}, true,
		"0.80|0.82|0.84|0.86|0.88|0.90|0.92|0.94"},
		{{1e-8, 1e-8, 1e-8, 1e-8}, false,
		"4e-09|6e-09|8e-09|1e-08|1.2e-08|1.4e-08|1.6e-08"},
		{{1e8, 1e8, 1e8, 1e8}, false,
		"4e+07|6e+07|8e+07|1e+08|1.2e+08|1.4e+08|1.6e+08"},
		{{1, 1.0001, 1, 1}, false,
		"1.00000|1.00002|1.00004|1.00006|1.00008|1.00010"},
	};
	static const struct
	{
		int32_t		n;
		const char *want;
	}			epochs[] = {
		{1, "1"}, {2, "1|2"}, {10, "1|2|3|4|5|6|7|8|9|10"},
		{30, "5|10|15|20|25|30"}, {64, "10|20|30|40|50|60"},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char	   *svg;
		xmlDocPtr	doc = doc_of(cases[i].v, 4, cases[i].accuracy, &svg);

		assert_y_ticks(doc, cases[i].accuracy ? "accuracy" : "loss",
					   cases[i].want);
		xmlFreeDoc(doc);
		free(svg);
	}
	for (size_t i = 0; i < sizeof(epochs) / sizeof(epochs[0]); i++)
	{
		double		v[64] = {0};
		char	   *svg;
		xmlDocPtr	doc = doc_of(v, epochs[i].n, false, &svg);

		assert_strings(doc, X_TICKS("loss") "/svg:text", epochs[i].want);
		xmlFreeDoc(doc);
		free(svg);
	}
}

/* Every vertex lies inside the plot area, whatever the magnitudes. */
static void
assert_inside(xmlDocPtr doc, const char *svg)
{
	double		top = number(doc, FRAME("loss") "/@y");
	double		h = number(doc, FRAME("loss") "/@height");
	const char *p = strstr(svg, "<polyline points=\"");

	assert_non_null(p);
	p += strlen("<polyline points=\"");
	while (*p != '"')
	{
		char	   *end;
		double		y;

		strtod(p, &end);
		assert_true(*end == ',');
		y = strtod(end + 1, &end);
		if (y < top - 0.01 || y > top + h + 0.01)
			fail_msg("vertex y %g outside [%g, %g]", y, top, top + h);
		p = end + (*end == ' ' || *end == '\n');
	}
}

/* Huge, tiny, mixed and denormal values give finite, inside coordinates. */
static void
test_magnitudes(void **state)
{
	static const double cases[][4] = {
		{1e-8, 1e8, 1, 1e-8},
		{NN_PLOT_MAX_ABS, -NN_PLOT_MAX_ABS, 0, 1},
		{1e-300, 2e-300, 3e-300, 1e-300},
		{5e-324, 0, 1e-310, 0},
		{1e300, 1e300, 1e300, 1e300},
		{-2.5e-5, -1e-5, -3e-5, -2e-5},
	};

	(void) state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char	   *svg;
		xmlDocPtr	doc = doc_of(cases[i], 4, false, &svg);

		assert_inside(doc, svg);
		assert_true(count(doc, "//svg:g[@class='ticks-y']/svg:text") >= 2);
		xmlFreeDoc(doc);
		free(svg);
	}
}

/* Infinite or too large values, and sizes over the bounds, fail. */
static void
test_bad_input(void **state)
{
	hist		t;
	nn_error	err;
	char	   *svg = NULL;

	(void) state;
	hist_make(&t, 5, true, true);
	t.val_loss[2] = INFINITY;
	assert_status(nn_plot_render(&svg, NULL, "m", &t.h, &nn_malloc_alloc, &err),
				  NN_ERR_DATA, &err);
	assert_string_equal(err.message, "val_loss of epoch 3 is out of range");
	hist_make(&t, 5, true, true);
	t.accuracy[4] = -1.5e300;
	assert_status(nn_plot_render(&svg, NULL, "m", &t.h, &nn_malloc_alloc, &err),
				  NN_ERR_DATA, &err);
	assert_string_equal(err.message, "accuracy of epoch 5 is out of range");
	assert_null(svg);

	hist_make(&t, 5, false, false);
	t.h.n_epochs = NN_PLOT_MAX_EPOCHS + 1;
	assert_status(nn_plot_render(&svg, NULL, "m", &t.h, &nn_malloc_alloc, &err),
				  NN_ERR_LIMIT, &err);
	t.h.n_epochs = -1;
	assert_status(nn_plot_render(&svg, NULL, "m", &t.h, &nn_malloc_alloc, &err),
				  NN_ERR_INTERNAL, &err);
	t.h.n_epochs = 5;
	t.h.n_starts = 2;			/* without the array */
	assert_status(nn_plot_render(&svg, NULL, "m", &t.h, &nn_malloc_alloc, &err),
				  NN_ERR_INTERNAL, &err);
	assert_null(svg);
}

/* Version starts outside 2..n are not drawn; the others are, per panel. */
static void
test_version_starts(void **state)
{
	hist		t;
	int32_t		starts[] = {0, 1, 4, 11, -3, 8};
	char	   *svg;
	xmlDocPtr	doc;
	double		x0;
	double		x1;

	(void) state;
	hist_make(&t, 10, true, true);
	t.h.starts = starts;
	t.h.n_starts = 6;
	svg = render("v", &t.h, NULL);
	doc = parse(svg);
	assert_int_equal(count(doc, "//svg:g[@class='version-starts']/svg:line"),
					 4);
	/* half an epoch before epoch 4: between the vertices of epochs 3 and 4 */
	x0 = number(doc, X_TICKS("loss") "/svg:line[3]/@x1");
	x1 = number(doc, X_TICKS("loss") "/svg:line[4]/@x1");
	assert_scalar_close("start x", number(doc, PANEL("loss")
										  "/svg:g[@class='version-starts']"
										  "/svg:line[1]/@x1"),
						(x0 + x1) / 2, 0.011, 0);
	xmlFreeDoc(doc);
	free(svg);

	t.h.n_starts = 2;			/* 0 and 1 only: nothing to mark */
	svg = render("v", &t.h, NULL);
	assert_null(strstr(svg, "version-start"));
	free(svg);
}

/* One allocation, exactly the document; a failed one is reported. */
static void
test_allocation(void **state)
{
	hist		t;
	nt_counter	c;
	nn_alloc	a = nt_counter_alloc(&c, 0);
	nn_error	err;
	char	   *svg = NULL;
	size_t		len;

	(void) state;
	hist_make(&t, 10, true, true);
	assert_status(nn_plot_render(&svg, &len, "m", &t.h, &a, &err),
				  NN_ERR_MEMORY, &err);
	assert_null(svg);
	assert_int_equal(c.allocs, 0);

	a = nt_counter_alloc(&c, -1);
	assert_ok(nn_plot_render(&svg, &len, "m", &t.h, &a, &err), &err);
	assert_int_equal(c.allocs, 1);
	assert_int_equal(c.max_single, len + 1);
	a.free(a.ctx, svg);
	assert_int_equal(c.live_bytes, 0);
}

/* Render the full test history with gaps and starts. */
static char *
render_full(void)
{
	hist		t;
	int32_t		starts[] = {5};

	hist_make(&t, 12, true, true);
	t.val_accuracy[6] = NAN;
	t.loss[0] = 1234.5678;
	t.h.starts = starts;
	t.h.n_starts = 1;
	return render("det \xC3\xA9", &t.h, NULL);
}

/* The same input gives the same bytes. */
static void
test_deterministic(void **state)
{
	char	   *a = render_full();
	char	   *b = render_full();

	(void) state;
	assert_string_equal(a, b);
	free(a);
	free(b);
}

/* And under a locale whose decimal separator is a comma. */
static void
test_decimal_comma(void **state)
{
	static const char *const locales[] = {
		"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "de_DE",
		"nl_NL.UTF-8", "ru_RU.UTF-8"
	};
	char	   *a = render_full();
	char	   *b;
	const char *name = NULL;

	(void) state;
	for (size_t i = 0; i < sizeof(locales) / sizeof(locales[0]) && !name; i++)
		if (setlocale(LC_ALL, locales[i]) &&
			strcmp(localeconv()->decimal_point, ",") == 0)
			name = locales[i];
	if (!name)
	{
		setlocale(LC_ALL, "C");
		free(a);
		print_message("no locale with a decimal comma here; skipped\n");
		skip();
	}
	b = render_full();
	setlocale(LC_ALL, "C");
	if (strcmp(a, b) != 0)
		fail_msg("the SVG differs under locale %s", name);
	print_message("same bytes under %s\n", name);
	free(a);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wellformed),
		cmocka_unit_test(test_title_escaping),
		cmocka_unit_test(test_title_limits),
		cmocka_unit_test(test_legend),
		cmocka_unit_test(test_single_epoch),
		cmocka_unit_test(test_nan_gaps),
		cmocka_unit_test(test_ticks),
		cmocka_unit_test(test_magnitudes),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_version_starts),
		cmocka_unit_test(test_allocation),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_decimal_comma),
	};
	int			failed;

	LIBXML_TEST_VERSION;
	failed = NT_RUN(tests);
	xmlCleanupParser();
	return failed;
}
