/*
 * plot.c: a model's learning curves as a standalone SVG 1.1 document
 * (nn_plot_render).
 *
 * The image is a title over one column of panels: loss, then accuracy when
 * the history has any.  Each panel is a plot area framed by its axes, with
 * ticks at "nice" values (1, 2 or 5 times a power of ten), grid lines, tick
 * labels, axis titles and a legend row above it.  Epoch e is drawn at x = e
 * on an axis from 0.5 to n + 0.5.  Training curves are solid blue with
 * round markers, validation curves dashed vermillion with square ones: two
 * colours of Okabe and Ito's palette for colour-blind readers
 * (https://jfly.uni-koeln.de/color/), told apart by dash and marker shape
 * as well.  The value axis runs a little past its outer ticks, so that no
 * point lies on the frame.  A missing value (NaN) breaks a curve.  Every
 * point gets a marker when there are few epochs, and a point without a
 * neighbour always does, so a single epoch shows.  A thin dashed grey line,
 * half an epoch before it, marks each epoch at which a later version's
 * training started.
 *
 * The document is written twice, first only to measure it, so that it is
 * allocated once and exactly.  Numbers never go through printf, whose
 * decimal point follows LC_NUMERIC: coordinates are written to two decimals
 * from a rounded integer, tick labels exactly from their integer form
 * (k m 10^p) in the style of %g, so the same input gives the same bytes.
 *
 * Left out: logarithmic axes, smoothing, and thinning long histories (a
 * curve has one vertex per epoch, NN_PLOT_MAX_EPOCHS at most).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

/* Layout, in pixels (the user unit of the viewBox). */
#define PLOT_WIDTH		720
#define PLOT_TITLE_H	44		/* title band */
#define PLOT_PANEL_H	300		/* legend row, plot area, x labels, gap */
#define PLOT_LEGEND_H	30		/* legend row, above the plot area */
#define PLOT_AREA_H		216		/* plot area */
#define PLOT_RIGHT_GAP	24		/* right of the plot area */
#define PLOT_CHAR_W		7.0		/* estimated width of a 12px character */
#define PLOT_TITLE_SIZE	15		/* title font size, for up to */
#define PLOT_TITLE_FIT	70		/* this many characters; smaller for more */
#define PLOT_TITLE_MIN	10		/* down to this size, which fits */
#define PLOT_TITLE_CHARS 100	/* this many: the heading stops there */

#define PLOT_MARK_EPOCHS 30		/* mark every point up to this many epochs */
#define PLOT_Y_INTERVALS 5		/* aimed-for tick intervals */
#define PLOT_X_INTERVALS 8
#define PLOT_TINY		1e-290	/* magnitudes and spans below count as 0 */

#define PLOT_TRAIN_COLOUR	"#0072B2"	/* Okabe-Ito blue */
#define PLOT_VAL_COLOUR		"#D55E00"	/* Okabe-Ito vermillion */
#define PLOT_INK		"#222222"	/* text */
#define PLOT_AXIS		"#333333"
#define PLOT_GRID		"#e4e4e4"
#define PLOT_VERSION	"#777777"

/* An axis: the domain drawn, and ticks at k m 10^p for k in k0..k1. */
typedef struct plot_axis
{
	double		lo;
	double		hi;
	int64_t		k0;
	int64_t		k1;
	int32_t		m;				/* 1, 2 or 5 */
	int32_t		p;
	bool		sci;			/* labels in exponent form */
} plot_axis;

/* One curve: a series of the history and how it is drawn. */
typedef struct plot_series
{
	const double *v;			/* (n) values, NaN where missing */
	const char *name;			/* "val_loss": element ids */
	const char *label;			/* legend text */
	const char *colour;
	bool		validation;		/* dashed, square markers */
} plot_series;

/* One panel: a metric's training and validation curves. */
typedef struct plot_panel
{
	const char *metric;			/* "loss", "accuracy": y axis title */
	plot_series series[2];		/* the present ones, training first */
	int			n_series;
	plot_axis	y;
	double		top;			/* plot area edges */
	double		bottom;
} plot_panel;

/* The whole figure, planned before it is written. */
typedef struct plot
{
	const char *title;
	size_t		title_len;
	int32_t		n;				/* epochs */
	const int32_t *starts;		/* (n_starts) epochs where a version starts */
	int32_t		n_starts;
	bool		any_start;		/* some start in 2..n */
	plot_axis	x;
	plot_panel	panels[2];
	int			n_panels;
	double		left;			/* plot area edges, every panel */
	double		right;
	int			height;
} plot;

/* The document being written; buf is NULL while it is only measured. */
typedef struct svg_out
{
	char	   *buf;
	size_t		len;
} svg_out;

/* ---------- output ---------- */

/* Append n bytes. */
static void
put_mem(svg_out *o, const char *s, size_t n)
{
	if (o->buf)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

/* Append a NUL-terminated string, written as is. */
static void
put(svg_out *o, const char *s)
{
	put_mem(o, s, strlen(s));
}

/* Append an integer in decimal. */
static void
put_int(svg_out *o, int64_t v)
{
	char		buf[24];
	size_t		i = sizeof(buf);
	uint64_t	u = v < 0 ? -(uint64_t) v : (uint64_t) v;

	do
	{
		buf[--i] = (char) ('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[--i] = '-';
	put_mem(o, buf + i, sizeof(buf) - i);
}

/* Append a coordinate to two decimals, without trailing zeros. */
static void
put_num(svg_out *o, double v)
{
	int64_t		c = llround(fmin(fmax(v, -1e9), 1e9) * 100);
	char		frac[3];

	if (c < 0)
	{
		put(o, "-");
		c = -c;
	}
	put_int(o, c / 100);
	if (c % 100 == 0)
		return;
	frac[0] = '.';
	frac[1] = (char) ('0' + c % 100 / 10);
	frac[2] = (char) ('0' + c % 10);
	put_mem(o, frac, c % 10 ? 3 : 2);
}

/* Append ` name="v"`, v a coordinate. */
static void
put_attr(svg_out *o, const char *name, double v)
{
	put(o, " ");
	put(o, name);
	put(o, "=\"");
	put_num(o, v);
	put(o, "\"");
}

/*
 * Bytes of the UTF-8 character at s (n bytes left), its code point in *cp;
 * 0 when malformed: truncated, overlong, a surrogate or beyond U+10FFFF.
 */
static size_t
utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t		len;
	uint32_t	c;
	uint32_t	min;

	if (s[0] < 0x80)
	{
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0)
		len = 2, c = s[0] & 0x1F, min = 0x80;
	else if ((s[0] & 0xF0) == 0xE0)
		len = 3, c = s[0] & 0x0F, min = 0x800;
	else if ((s[0] & 0xF8) == 0xF0)
		len = 4, c = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

/* Is the code point allowed in an XML 1.0 document? */
static bool
xml_char(uint32_t c)
{
	if (c < 0x20)
		return c == '\t' || c == '\n' || c == '\r';
	return c != 0xFFFE && c != 0xFFFF;
}

/*
 * Append at most max_chars characters of UTF-8 text, escaped for XML
 * content and attribute values; characters XML does not allow (control
 * characters, malformed bytes) become U+FFFD.
 */
static void
put_text(svg_out *o, const char *s, size_t n, size_t max_chars)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0;

	for (size_t chars = 0; i < n && chars < max_chars; chars++)
	{
		uint32_t	c = 0;
		size_t		len = utf8_char(u + i, n - i, &c);

		if (len == 0 || !xml_char(c))
			put(o, "\xEF\xBF\xBD");
		else if (c == '&')
			put(o, "&amp;");
		else if (c == '<')
			put(o, "&lt;");
		else if (c == '>')
			put(o, "&gt;");
		else if (c == '"')
			put(o, "&quot;");
		else if (c == '\'')
			put(o, "&#39;");
		else
			put_mem(o, s + i, len);
		i += len ? len : 1;
	}
}

/* Characters of UTF-8 text (malformed bytes count one each). */
static size_t
utf8_length(const char *s, size_t n)
{
	size_t		chars = 0;

	for (size_t i = 0; i < n; chars++)
	{
		uint32_t	c;
		size_t		len = utf8_char((const unsigned char *) s + i, n - i, &c);

		i += len ? len : 1;
	}
	return chars;
}

/* Append <text> at (x, y) with the given anchor, then the escaped label. */
static void
put_label(svg_out *o, double x, double y, const char *anchor, const char *s)
{
	put(o, "<text");
	put_attr(o, "x", x);
	put_attr(o, "y", y);
	if (anchor)
	{
		put(o, " text-anchor=\"");
		put(o, anchor);
		put(o, "\"");
	}
	put(o, ">");
	put_text(o, s, strlen(s), SIZE_MAX);
	put(o, "</text>\n");
}

/* Append <line> from (x1, y1) to (x2, y2). */
static void
put_line(svg_out *o, double x1, double y1, double x2, double y2)
{
	put(o, "<line");
	put_attr(o, "x1", x1);
	put_attr(o, "y1", y1);
	put_attr(o, "x2", x2);
	put_attr(o, "y2", y2);
	put(o, "/>\n");
}

/* ---------- tick labels ---------- */

/* The decimal digits of u into d, at least min (<= 20) of them; their count. */
static int32_t
format_digits(char *d, uint64_t u, int32_t min)
{
	char		t[24];
	int32_t		n = 0;

	do
		t[n++] = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	while (n < min)
		t[n++] = '0';
	for (int32_t i = 0; i < n; i++)
		d[i] = t[n - 1 - i];
	return n;
}

/* u 10^e as %g writes it in exponent form, all digits: 1.25e+08. */
static void
format_sci(char *b, uint64_t u, int32_t e)
{
	char		d[24];
	int32_t		nd;
	int32_t		x;

	for (; u % 10 == 0; u /= 10)
		e++;
	nd = format_digits(d, u, 1);
	x = e + nd - 1;				/* the leading digit's power of ten */
	*b++ = d[0];
	if (nd > 1)
		*b++ = '.';
	memcpy(b, d + 1, nd - 1);
	b += nd - 1;
	*b++ = 'e';
	*b++ = x < 0 ? '-' : '+';
	x = abs(x);
	if (x >= 100)
		*b++ = (char) ('0' + x / 100);
	*b++ = (char) ('0' + x / 10 % 10);
	*b++ = (char) ('0' + x % 10);
	*b = '\0';
}

/*
 * u 10^e in plain form with at least `decimals` decimals: 0.25, 1.50, 300.
 * The caller keeps u 10^(e + decimals) below 10^20.
 */
static void
format_plain(char *b, uint64_t u, int32_t e, int32_t decimals)
{
	char		d[24];
	int32_t		places = decimals > -e ? decimals : -e;
	int32_t		nd;

	for (int32_t i = 0; i < e + places; i++)
		u *= 10;
	nd = format_digits(d, u, places + 1);
	memcpy(b, d, nd - places);
	b += nd - places;
	if (places > 0)
	{
		*b++ = '.';
		memcpy(b, d + nd - places, places);
		b += places;
	}
	*b = '\0';
}

/*
 * The label of tick k (k m 10^p) into buf (48 bytes), exactly: plain with
 * the decimals of the step, or in exponent form for the whole axis when
 * its largest tick is below 1e-4 or from 1e6 (as %g chooses) or the step
 * has more than 15 decimals.
 */
static void
axis_label(const plot_axis *a, int64_t k, char *buf)
{
	int64_t		n = k * a->m;
	uint64_t	u = n < 0 ? -(uint64_t) n : (uint64_t) n;

	if (n < 0)
		*buf++ = '-';
	if (a->sci && u == 0)
		strcpy(buf, "0");
	else if (a->sci)
		format_sci(buf, u, a->p);
	else
		format_plain(buf, u, a->p, a->p < 0 ? -a->p : 0);
}

/* Choose the labels' form: exponent or plain (see axis_label). */
static void
axis_label_form(plot_axis *a)
{
	uint64_t	u0 = (uint64_t) llabs(a->k0);
	uint64_t	u1 = (uint64_t) llabs(a->k1);
	char		d[24];
	int32_t		x = format_digits(d, (u0 > u1 ? u0 : u1) * a->m, 1) - 1 + a->p;

	a->sci = x < -4 || x >= 6 || a->p < -15;
}

/* ---------- axes ---------- */

/* 10^p for p >= 0: exact up to 10^22. */
static double
pow10_exact(int32_t p)
{
	double		r = 1;

	if (p > 22)
		return pow(10.0, p);
	for (int32_t i = 0; i < p; i++)
		r *= 10;
	return r;
}

/* The value of tick k, k m 10^p. */
static double
axis_tick(const plot_axis *a, int64_t k)
{
	double		n = (double) (k * a->m);

	/* by an exact power: 3 / 10 is 0.3, 3 * 0.1 is 0.30000000000000004 */
	return a->p >= 0 ? n * pow10_exact(a->p) : n / pow10_exact(-a->p);
}

/* The 1-2-5 step m 10^p nearest span / intervals. */
static void
axis_step(plot_axis *a, double span, int intervals)
{
	double		raw = span / intervals;
	int32_t		p = (int32_t) floor(log10(raw));
	double		f = p >= 0 ? raw / pow10_exact(p) : raw * pow10_exact(-p);

	if (f >= 10)				/* log10 rounded across a power of ten */
		f /= 10, p++;
	else if (f < 1)
		f *= 10, p--;
	if (f < 1.5)
		a->m = 1;
	else if (f < 3)
		a->m = 2;
	else if (f < 7)
		a->m = 5;
	else
		a->m = 1, p++;
	a->p = p;
}

/*
 * Ticks over [lo, hi], lo < hi, about intervals apart, from the last tick
 * at or below lo to the first at or above hi.  The domain is theirs (or
 * the values', should rounding leave one outside) and a little more, so
 * that no point or marker lies on the frame.
 */
static void
axis_fit(plot_axis *a, double lo, double hi, int intervals)
{
	double		step;
	double		pad;

	axis_step(a, hi - lo, intervals);
	step = axis_tick(a, 1);
	/* values within rounding of a tick are on it */
	a->k0 = (int64_t) floor(lo / step + 1e-9);
	a->k1 = (int64_t) ceil(hi / step - 1e-9);
	a->lo = fmin(lo, axis_tick(a, a->k0));
	a->hi = fmax(hi, axis_tick(a, a->k1));
	pad = (a->hi - a->lo) * 0.04;
	a->lo -= pad;
	a->hi += pad;
	axis_label_form(a);
}

/*
 * The value axis over the values in [lo, hi] (lo > hi: none).  A zero or
 * rounding-size span widens to half the value either side (to [-1, 1]
 * about zero), within [0, 1] for a metric there (unit).
 */
static void
axis_fit_values(plot_axis *a, double lo, double hi, bool unit)
{
	double		mag = fmax(fabs(lo), fabs(hi));

	if (lo > hi)
		lo = 0, hi = 1;
	else if (hi - lo <= fmax(mag * 1e-9, PLOT_TINY))
	{
		double		c = (lo + hi) / 2;
		double		half = fabs(c) >= PLOT_TINY ? fabs(c) / 2 : 1;

		lo = c - half;
		hi = c + half;
		if (unit)
			lo = fmax(lo, 0), hi = fmin(hi, 1);
	}
	axis_fit(a, lo, hi, PLOT_Y_INTERVALS);
}

/* The epoch axis: 0.5 to n + 0.5, ticks at whole epochs 1..n. */
static void
axis_fit_epochs(plot_axis *a, int32_t n)
{
	a->lo = 0.5;
	a->hi = (n > 0 ? n : 1) + 0.5;
	a->m = 1;
	a->p = 0;
	if (n > 1)
		axis_step(a, n - 1, PLOT_X_INTERVALS);
	if (a->p < 0)
		a->m = 1, a->p = 0;
	a->k0 = 1;
	a->k1 = n / (a->m * (int64_t) pow10_exact(a->p));
	a->sci = false;
}

/* ---------- plan ---------- */

/* Does the series have a value? */
static bool
series_present(const double *v, int32_t n)
{
	if (v)
		for (int32_t i = 0; i < n; i++)
			if (!isnan(v[i]))
				return true;
	return false;
}

/* Add a series to a panel when it has a value. */
static void
panel_add(plot_panel *pan, const double *v, int32_t n, const char *name,
		  const char *label, bool validation)
{
	plot_series *s = &pan->series[pan->n_series];

	if (!series_present(v, n))
		return;
	s->v = v;
	s->name = name;
	s->label = label;
	s->colour = validation ? PLOT_VAL_COLOUR : PLOT_TRAIN_COLOUR;
	s->validation = validation;
	pan->n_series++;
}

/* A panel's curves and value axis, over the [0, 1] unit range if it can. */
static void
panel_plan(plot_panel *pan, const char *metric, int32_t n, bool unit)
{
	double		lo = INFINITY;
	double		hi = -INFINITY;

	pan->metric = metric;
	for (int i = 0; i < pan->n_series; i++)
		for (int32_t e = 0; e < n; e++)
			if (!isnan(pan->series[i].v[e]))
			{
				lo = fmin(lo, pan->series[i].v[e]);
				hi = fmax(hi, pan->series[i].v[e]);
			}
	axis_fit_values(&pan->y, lo, hi, unit && lo >= 0 && hi <= 1);
	if (pan->n_series == 0)		/* no scale to read off */
		pan->y.k0 = 1, pan->y.k1 = 0;
}

/* Characters of the longest value tick label of a panel. */
static size_t
panel_label_chars(const plot_panel *pan)
{
	char		buf[48];
	size_t		longest = 0;

	for (int64_t k = pan->y.k0; k <= pan->y.k1; k++)
	{
		axis_label(&pan->y, k, buf);
		if (strlen(buf) > longest)
			longest = strlen(buf);
	}
	return longest;
}

/* Everything but the bytes: panels, axes and their place. */
static void
plot_plan(plot *pl, const char *title, const nn_plot_history *h)
{
	int32_t		n = h->n_epochs;
	plot_panel *loss = &pl->panels[0];
	plot_panel *acc = &pl->panels[1];
	size_t		chars = 0;

	memset(pl, 0, sizeof(*pl));
	pl->title = title;
	pl->title_len = strlen(title);
	pl->n = n;
	pl->starts = h->starts;
	pl->n_starts = h->n_starts;
	for (int32_t i = 0; i < h->n_starts; i++)
		pl->any_start |= h->starts[i] >= 2 && h->starts[i] <= n;

	panel_add(loss, h->loss, n, "loss", "training loss", false);
	panel_add(loss, h->val_loss, n, "val_loss", "validation loss", true);
	panel_add(acc, h->accuracy, n, "accuracy", "training accuracy", false);
	panel_add(acc, h->val_accuracy, n, "val_accuracy", "validation accuracy",
			  true);
	panel_plan(loss, "loss", n, false);
	panel_plan(acc, "accuracy", n, true);
	pl->n_panels = acc->n_series > 0 ? 2 : 1;

	axis_fit_epochs(&pl->x, n);
	for (int i = 0; i < pl->n_panels; i++)
	{
		size_t		c = panel_label_chars(&pl->panels[i]);

		chars = c > chars ? c : chars;
		pl->panels[i].top = PLOT_TITLE_H + i * PLOT_PANEL_H + PLOT_LEGEND_H;
		pl->panels[i].bottom = pl->panels[i].top + PLOT_AREA_H;
	}
	/* the rotated axis title, then the longest tick label */
	pl->left = fmax(64, 36 + PLOT_CHAR_W * chars);
	pl->right = PLOT_WIDTH - PLOT_RIGHT_GAP;
	pl->height = PLOT_TITLE_H + pl->n_panels * PLOT_PANEL_H;
}

/* ---------- drawing ---------- */

/* The x of an epoch (or of a point between two). */
static double
map_x(const plot *pl, double v)
{
	return pl->left + (v - pl->x.lo) / (pl->x.hi - pl->x.lo) *
		(pl->right - pl->left);
}

/* The y of a value in a panel. */
static double
map_y(const plot_panel *pan, double v)
{
	return pan->bottom - (v - pan->y.lo) / (pan->y.hi - pan->y.lo) *
		(pan->bottom - pan->top);
}

/* The XML declaration, the root element, title, description, background. */
static void
draw_head(svg_out *o, const plot *pl)
{
	size_t		chars = utf8_length(pl->title, pl->title_len);
	int64_t		size = PLOT_TITLE_SIZE;

	if (chars > PLOT_TITLE_FIT)
		size = (int64_t) (PLOT_TITLE_SIZE * PLOT_TITLE_FIT / chars);

	put(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"");
	put_int(o, PLOT_WIDTH);
	put(o, "\" height=\"");
	put_int(o, pl->height);
	put(o, "\" viewBox=\"0 0 ");
	put_int(o, PLOT_WIDTH);
	put(o, " ");
	put_int(o, pl->height);
	put(o, "\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\""
		" font-size=\"12\" fill=\"" PLOT_INK "\">\n<title>");
	put_text(o, pl->title, pl->title_len, SIZE_MAX);
	put(o, "</title>\n<desc>Learning curves by epoch: training solid,"
		" validation dashed.</desc>\n<rect width=\"100%\" height=\"100%\""
		" fill=\"#ffffff\"/>\n<text id=\"title\" x=\"");
	put_int(o, PLOT_WIDTH / 2);
	put(o, "\" y=\"28\" text-anchor=\"middle\" font-weight=\"bold\""
		" font-size=\"");
	put_int(o, size < PLOT_TITLE_MIN ? PLOT_TITLE_MIN : size);
	put(o, "\">");
	if (chars <= PLOT_TITLE_CHARS)
		put_text(o, pl->title, pl->title_len, SIZE_MAX);
	else
	{
		put_text(o, pl->title, pl->title_len, PLOT_TITLE_CHARS - 1);
		put(o, "\xE2\x80\xA6");	/* an ellipsis for the rest */
	}
	put(o, "</text>\n");
}

/* Grid lines at the ticks of both axes. */
static void
draw_grid(svg_out *o, const plot *pl, const plot_panel *pan)
{
	put(o, "<g class=\"grid\" stroke=\"" PLOT_GRID "\" stroke-width=\"1\""
		" shape-rendering=\"crispEdges\">\n");
	for (int64_t k = pan->y.k0; k <= pan->y.k1; k++)
	{
		double		y = map_y(pan, axis_tick(&pan->y, k));

		put_line(o, pl->left, y, pl->right, y);
	}
	for (int64_t k = pl->x.k0; k <= pl->x.k1; k++)
	{
		double		x = map_x(pl, axis_tick(&pl->x, k));

		put_line(o, x, pan->top, x, pan->bottom);
	}
	put(o, "</g>\n");
}

/* Tick marks and labels of the value axis, and its title. */
static void
draw_y_axis(svg_out *o, const plot *pl, const plot_panel *pan)
{
	char		label[48];
	double		mid = (pan->top + pan->bottom) / 2;

	put(o, "<g class=\"ticks-y\" text-anchor=\"end\">\n");
	for (int64_t k = pan->y.k0; k <= pan->y.k1; k++)
	{
		double		y = map_y(pan, axis_tick(&pan->y, k));

		axis_label(&pan->y, k, label);
		put(o, "<line stroke=\"" PLOT_AXIS "\"");
		put_attr(o, "x1", pl->left - 5);
		put_attr(o, "y1", y);
		put_attr(o, "x2", pl->left);
		put_attr(o, "y2", y);
		put(o, "/>\n");
		put_label(o, pl->left - 8, y + 4, NULL, label);
	}
	put(o, "</g>\n<text class=\"axis-title\" x=\"18\"");
	put_attr(o, "y", mid);
	put(o, " text-anchor=\"middle\" transform=\"rotate(-90 18 ");
	put_num(o, mid);
	put(o, ")\">");
	put(o, pan->metric);
	put(o, "</text>\n");
}

/* Tick marks and labels of the epoch axis, and its title. */
static void
draw_x_axis(svg_out *o, const plot *pl, const plot_panel *pan)
{
	char		label[48];

	put(o, "<g class=\"ticks-x\" text-anchor=\"middle\">\n");
	for (int64_t k = pl->x.k0; k <= pl->x.k1; k++)
	{
		double		x = map_x(pl, axis_tick(&pl->x, k));

		axis_label(&pl->x, k, label);
		put(o, "<line stroke=\"" PLOT_AXIS "\"");
		put_attr(o, "x1", x);
		put_attr(o, "y1", pan->bottom);
		put_attr(o, "x2", x);
		put_attr(o, "y2", pan->bottom + 5);
		put(o, "/>\n");
		put_label(o, x, pan->bottom + 19, NULL, label);
	}
	put(o, "</g>\n");
	put(o, "<text class=\"axis-title\" text-anchor=\"middle\"");
	put_attr(o, "x", (pl->left + pl->right) / 2);
	put_attr(o, "y", pan->bottom + 38);
	put(o, ">epoch</text>\n");
}

/* A thin dashed line half an epoch before each version's first epoch. */
static void
draw_starts(svg_out *o, const plot *pl, const plot_panel *pan)
{
	if (!pl->any_start)
		return;
	put(o, "<g class=\"version-starts\" stroke=\"" PLOT_VERSION "\""
		" stroke-width=\"1\" stroke-dasharray=\"3 3\">\n");
	for (int32_t i = 0; i < pl->n_starts; i++)
	{
		int32_t		s = pl->starts[i];

		if (s >= 2 && s <= pl->n)
			put_line(o, map_x(pl, s - 0.5), pan->top, map_x(pl, s - 0.5),
					 pan->bottom);
	}
	put(o, "</g>\n");
}

/* Attributes of a series' lines: colour, width, dashes. */
static void
put_stroke(svg_out *o, const plot_series *s)
{
	put(o, " fill=\"none\" stroke=\"");
	put(o, s->colour);
	put(o, "\" stroke-width=\"2\" stroke-linejoin=\"round\"");
	if (s->validation)
		put(o, " stroke-dasharray=\"7 4\"");
}

/* A series' marker at (x, y): a circle, or a square for validation. */
static void
put_marker(svg_out *o, const plot_series *s, double x, double y)
{
	if (s->validation)
	{
		put(o, "<rect");
		put_attr(o, "x", x - 3.5);
		put_attr(o, "y", y - 3.5);
		put(o, " width=\"7\" height=\"7\"/>\n");
	}
	else
	{
		put(o, "<circle");
		put_attr(o, "cx", x);
		put_attr(o, "cy", y);
		put(o, " r=\"3.5\"/>\n");
	}
}

/* One polyline through the values of epochs [i, j), all present. */
static void
draw_run(svg_out *o, const plot *pl, const plot_panel *pan,
		 const double *v, int32_t i, int32_t j)
{
	put(o, "<polyline points=\"");
	for (int32_t e = i; e < j; e++)
	{
		if (e > i)
			put(o, (e - i) % 8 ? " " : "\n");
		put_num(o, map_x(pl, e + 1));
		put(o, ",");
		put_num(o, map_y(pan, v[e]));
	}
	put(o, "\"/>\n");
}

/* A series' curve, broken where values are missing, then its markers. */
static void
draw_series(svg_out *o, const plot *pl, const plot_panel *pan,
			const plot_series *s)
{
	const double *v = s->v;
	int32_t		n = pl->n;

	put(o, "<g id=\"curve-");
	put(o, s->name);
	put(o, "\" class=\"curve\"");
	put_stroke(o, s);
	put(o, ">\n");
	for (int32_t i = 0; i < n;)
	{
		int32_t		j = i;

		while (j < n && !isnan(v[j]))
			j++;
		if (j - i >= 2)
			draw_run(o, pl, pan, v, i, j);
		i = j + 1;				/* past the missing value that ended the run */
	}
	put(o, "</g>\n<g id=\"markers-");
	put(o, s->name);
	put(o, "\" class=\"markers\" fill=\"");
	put(o, s->colour);
	put(o, "\">\n");
	for (int32_t e = 0; e < n; e++)
	{
		bool		alone = (e == 0 || isnan(v[e - 1])) &&
			(e == n - 1 || isnan(v[e + 1]));

		if (!isnan(v[e]) && (n <= PLOT_MARK_EPOCHS || alone))
			put_marker(o, s, map_x(pl, e + 1), map_y(pan, v[e]));
	}
	put(o, "</g>\n");
}

/*
 * A legend entry at x, id "legend-" name (then "-" suffix): a sample line,
 * a marker when s, and the label.  Returns the x of the next entry.
 */
static double
draw_legend_entry(svg_out *o, double x, double y, const char *name,
				  const char *suffix, const plot_series *s, const char *label)
{
	put(o, "<g id=\"legend-");
	put(o, name);
	if (suffix)
	{
		put(o, "-");
		put(o, suffix);
	}
	put(o, "\" class=\"legend-entry\">\n<line");
	if (s)
		put_stroke(o, s);
	else
		put(o, " stroke=\"" PLOT_VERSION "\" stroke-dasharray=\"3 3\"");
	put_attr(o, "x1", x);
	put_attr(o, "y1", y - 4);
	put_attr(o, "x2", x + 30);
	put_attr(o, "y2", y - 4);
	put(o, "/>\n");
	if (s)
	{
		put(o, "<g class=\"legend-marker\" fill=\"");
		put(o, s->colour);
		put(o, "\">");
		put_marker(o, s, x + 15, y - 4);
		put(o, "</g>\n");
	}
	put_label(o, x + 36, y, NULL, label);
	put(o, "</g>\n");
	return x + 36 + PLOT_CHAR_W * strlen(label) + 22;
}

/* The legend row above the plot area: the panel's series, version starts. */
static void
draw_legend(svg_out *o, const plot *pl, const plot_panel *pan)
{
	double		x = pl->left;
	double		y = pan->top - 12;

	put(o, "<g class=\"legend\">\n");
	for (int i = 0; i < pan->n_series; i++)
		x = draw_legend_entry(o, x, y, pan->series[i].name, NULL,
							  &pan->series[i], pan->series[i].label);
	if (pl->any_start)	/* ids are unique: one entry in each panel */
		draw_legend_entry(o, x, y, "version-start", pan->metric, NULL,
						  "new version");
	put(o, "</g>\n");
}

/* One panel: grid, axes, version starts, curves, frame, legend. */
static void
draw_panel(svg_out *o, const plot *pl, const plot_panel *pan)
{
	put(o, "<g id=\"panel-");
	put(o, pan->metric);
	put(o, "\" class=\"panel\">\n");
	draw_grid(o, pl, pan);
	draw_y_axis(o, pl, pan);
	draw_x_axis(o, pl, pan);
	draw_starts(o, pl, pan);
	for (int i = pan->n_series - 1; i >= 0; i--)	/* training on top */
		draw_series(o, pl, pan, &pan->series[i]);
	if (pan->n_series == 0)
		put_label(o, (pl->left + pl->right) / 2, (pan->top + pan->bottom) / 2,
				  "middle", pl->n > 0 ? "no values recorded"
				  : "no epochs recorded");
	put(o, "<rect class=\"frame\" fill=\"none\" stroke=\"" PLOT_AXIS "\""
		" shape-rendering=\"crispEdges\"");
	put_attr(o, "x", pl->left);
	put_attr(o, "y", pan->top);
	put_attr(o, "width", pl->right - pl->left);
	put_attr(o, "height", pan->bottom - pan->top);
	put(o, "/>\n");
	draw_legend(o, pl, pan);
	put(o, "</g>\n");
}

/* The whole document. */
static void
draw_plot(svg_out *o, const plot *pl)
{
	draw_head(o, pl);
	for (int i = 0; i < pl->n_panels; i++)
		draw_panel(o, pl, &pl->panels[i]);
	put(o, "</svg>\n");
}

/* ---------- entry point ---------- */

/* The title: at most NN_PLOT_MAX_TITLE bytes of UTF-8. */
static nn_status
plot_check_title(const char *title, nn_error *err)
{
	size_t		len = strnlen(title, NN_PLOT_MAX_TITLE + 1);

	if (len > NN_PLOT_MAX_TITLE)
	{
		nn_fail(err, NN_ERR_LIMIT, -1, "plot title is too long");
		nn_detail(err, "A plot title has at most %d bytes.", NN_PLOT_MAX_TITLE);
		return NN_ERR_LIMIT;
	}
	for (size_t i = 0, n; i < len; i += n)
	{
		uint32_t	c;

		n = utf8_char((const unsigned char *) title + i, len - i, &c);
		if (n == 0)
			return nn_fail(err, NN_ERR_DATA, -1,
						   "plot title is not valid UTF-8");
	}
	return NN_OK;
}

/* The sizes, then every value: NaN, or finite within NN_PLOT_MAX_ABS. */
static nn_status
plot_check_history(const nn_plot_history *h, nn_error *err)
{
	static const char *const names[4] = {
		"loss", "accuracy", "val_loss", "val_accuracy"
	};
	const double *series[4] = {h->loss, h->accuracy, h->val_loss,
	h->val_accuracy};

	if (h->n_epochs < 0 || h->n_starts < 0 || (h->n_starts > 0 && !h->starts))
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "invalid plot history: %d epochs, %d version starts",
					   (int) h->n_epochs, (int) h->n_starts);
	if (h->n_epochs > NN_PLOT_MAX_EPOCHS || h->n_starts > NN_PLOT_MAX_EPOCHS)
	{
		nn_fail(err, NN_ERR_LIMIT, -1,
				"history of %d epochs and %d version starts is too long to plot",
				(int) h->n_epochs, (int) h->n_starts);
		nn_detail(err, "A plot shows at most %d epochs and as many version starts.",
				  NN_PLOT_MAX_EPOCHS);
		return NN_ERR_LIMIT;
	}
	for (int s = 0; s < 4; s++)
		for (int32_t e = 0; series[s] && e < h->n_epochs; e++)
			if (!isnan(series[s][e]) &&
				!(fabs(series[s][e]) <= NN_PLOT_MAX_ABS))
			{
				nn_fail(err, NN_ERR_DATA, -1, "%s of epoch %d is out of range",
						names[s], (int) e + 1);
				nn_detail(err, "A value to plot is finite and at most 1e300 in magnitude, or NaN when missing.");
				return NN_ERR_DATA;
			}
	return NN_OK;
}

/* The learning curves of a history as an SVG document (see nn.h). */
nn_status
nn_plot_render(char **svg, size_t *len, const char *title,
			   const nn_plot_history *history, const nn_alloc *alloc,
			   nn_error *err)
{
	plot		pl;
	svg_out		o = {NULL, 0};
	size_t		measured;
	nn_status	st;

	*svg = NULL;
	if (title == NULL || history == NULL || alloc == NULL)
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "plot without a title, history or allocator");
	if ((st = plot_check_title(title, err)) != NN_OK ||
		(st = plot_check_history(history, err)) != NN_OK)
		return st;
	plot_plan(&pl, title, history);
	draw_plot(&o, &pl);
	measured = o.len;
	o.buf = alloc->alloc(alloc->ctx, measured + 1);
	if (o.buf == NULL)
		return nn_fail(err, NN_ERR_MEMORY, -1, "out of memory");
	o.len = 0;
	draw_plot(&o, &pl);
	if (o.len != measured)
	{
		alloc->free(alloc->ctx, o.buf);
		return nn_fail(err, NN_ERR_INTERNAL, -1,
					   "plot of %zu bytes written as %zu", measured, o.len);
	}
	o.buf[o.len] = '\0';
	*svg = o.buf;
	if (len)
		*len = o.len;
	return NN_OK;
}
