/* test_report_chromium.c - `polyak report` pages in headless Chromium (Debian's chromium,
 * tools/install-deps.sh's optional list): a splat run's page light at laptop width, a MAN
 * comparison dark at phone width, continual-learning results dark at laptop width. Each
 * screenshot must not be blank (the theme's background at the corner, many colours, over 3% of
 * the pixels off the background, the theme's first series colour present), the console must
 * stay silent (Chromium logs every console message and uncaught error as a CONSOLE line), and
 * the DOM after the scripts ran must hold one hover layer per line plot (the hover script ran
 * to its end). On the splat page an added script moves the pointer over a plot (its values
 * must show) and clicks a render (it must open enlarged, and close on a click). Skipped (exit
 * 77) only where no chromium exists; POLYAK_CHROMIUM names another binary. */
#include "fixtures.h"

#include <unistd.h>

#include "report.h"

static const char *chromium(void) {
    const char *env = getenv("POLYAK_CHROMIUM");
    if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
    static const char *const paths[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser",
                                        "/usr/bin/google-chrome"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *q = strstr(hay, needle); q; q = strstr(q + 1, needle))
        n++;
    return n;
}

/* Renders page (a file) at w x h, dark or light; checks the screenshot, the console and the
 * DOM. */
static void render(const char *tmp, const char *page, int w, int h, bool dark, int line_plots,
                   bool interact) {
    static int run = 0;
    char copy[512];
    if (interact) { /* a copy of the page whose last script hovers a plot and clicks an image */
        snprintf(copy, sizeof copy, "%s/interact-%d.html", tmp, run);
        char *t = fx_read(page);
        char *end = strstr(t, "</body>");
        ck_assert_ptr_nonnull(end);
        FILE *f = fopen(copy, "wb");
        ck_assert_ptr_nonnull(f);
        fwrite(t, 1, (size_t)(end - t), f);
        fputs("<script>(function(){var s=document.querySelector('svg.plot.line'),"
              "r=s.getBoundingClientRect();s.dispatchEvent(new PointerEvent('pointermove',"
              "{clientX:r.left+r.width*0.6,clientY:r.top+r.height/2,bubbles:true}));"
              "var i=document.querySelector('.gallery img'),z=document.getElementById('zoom');"
              "i.click();document.body.setAttribute('data-zoom',z.className+'|'+"
              "(z.querySelector('img').src===i.src));z.click();"
              "document.body.setAttribute('data-zoom-closed',z.className)})();</script>",
              f);
        fputs(end, f);
        fclose(f);
        free(t);
        page = copy;
    }
    char shot[512], dom[512], log[512], ud[512], cmd[4096];
    snprintf(shot, sizeof shot, "%s/shot-%d.png", tmp, run);
    snprintf(dom, sizeof dom, "%s/dom-%d.html", tmp, run);
    snprintf(log, sizeof log, "%s/console-%d.txt", tmp, run);
    snprintf(ud, sizeof ud, "%s/profile-%d", tmp, run);
    run++;
    snprintf(cmd, sizeof cmd,
             "timeout 120 '%s' --headless --no-sandbox --disable-gpu --disable-quic "
             "--disable-background-networking --disable-component-update --disable-sync "
             "--no-first-run --user-data-dir='%s' --hide-scrollbars --window-size=%d,%d %s "
             "--enable-logging=stderr --v=0 --screenshot='%s' --dump-dom 'file://%s' > '%s' "
             "2> '%s'",
             chromium(), ud, w, h, dark ? "--force-dark-mode" : "", shot, page, dom, log);
    ck_assert_msg(system(cmd) == 0, "chromium failed: %s (see %s)", cmd, log);
    /* the console said nothing: no console.* call, no uncaught error */
    char *lt = fx_read(log);
    const char *c = strstr(lt, "CONSOLE");
    ck_assert_msg(c == NULL, "%s: console message: %.300s", page, c);
    free(lt);
    /* the scripts ran to the end: one hover layer per line plot */
    char *dt = fx_read(dom);
    ck_assert_msg(count(dt, "class=\"plot line\"") == (size_t)line_plots, "%s: %zu line plots",
                  page, count(dt, "class=\"plot line\""));
    ck_assert_msg(count(dt, "class=\"hover\"") == (size_t)line_plots, "%s: %zu hover layers", page,
                  count(dt, "class=\"hover\""));
    if (interact) {
        /* the hovered plot shows its value; the image opened enlarged and closed again */
        ck_assert_msg(count(dt, "class=\"hover\" style=\"display: none;\"") ==
                          (size_t)line_plots - 1,
                      "%s: the hovered plot shows no values", page);
        ck_assert_msg(strstr(dt, "<tspan") && strstr(dt, "class=\"tiphead\">step: "),
                      "%s: no hover text", page);
        ck_assert_msg(strstr(dt, "data-zoom=\"on|true\""), "%s: the image did not open", page);
        ck_assert_msg(strstr(dt, "data-zoom-closed=\"\""), "%s: the image did not close", page);
    }
    free(dt);
    /* the screenshot is a page, not a blank: the theme's background at the corner, many
     * colours, a good share of pixels off the background, the first series colour present */
    pk_image im;
    ck_assert_msg(png_read(shot, &im) == PK_OK, "%s", polyak_error());
    ck_assert_int_eq(im.w, w);
    ck_assert_int_eq(im.h, h);
    const uint8_t *px = im.data;
    int ch = im.c;
    int bg[3] = {px[0], px[1], px[2]};
    int want_bg[3] = {dark ? 0x12 : 0xff, dark ? 0x14 : 0xff, dark ? 0x18 : 0xff};
    for (int k = 0; k < 3; k++)
        ck_assert_msg(abs(bg[k] - want_bg[k]) <= 2, "%s: background %d,%d,%d (dark %d)", page,
                      bg[0], bg[1], bg[2], dark);
    int series[3] = {dark ? 0x6a : 0x1f, dark ? 0xa9 : 0x6f, dark ? 0xff : 0xc5};
    long off = 0, hits = 0;
    static unsigned char seen[1 << 15];
    memset(seen, 0, sizeof seen);
    long colours = 0;
    for (long i = 0; i < (long)im.w * im.h; i++) {
        const uint8_t *p = px + i * ch;
        int d = abs(p[0] - bg[0]) + abs(p[1] - bg[1]) + abs(p[2] - bg[2]);
        off += d > 24;
        hits += abs(p[0] - series[0]) + abs(p[1] - series[1]) + abs(p[2] - series[2]) <= 12;
        unsigned key = (unsigned)(p[0] >> 3) << 10 | (unsigned)(p[1] >> 3) << 5 | (p[2] >> 3);
        if (!seen[key]) seen[key] = 1, colours++;
    }
    double frac = (double)off / ((double)im.w * im.h);
    ck_assert_msg(frac > 0.03, "%s: only %.1f%% of pixels off the background", page, 100 * frac);
    ck_assert_msg(colours > 60, "%s: only %ld colours", page, colours);
    ck_assert_msg(hits > 50, "%s: the series colour shows on %ld pixels", page, hits);
    image_free(&im);
}

START_TEST(pages_render) {
    pkt_rng r = {(uint64_t)time(NULL) * 2654435761u + 11};
    char *root = fx_tmpdir();
    /* a splat run (run_report wrote its page) */
    char *splat = fx_join(root, "splat");
    fx_splat s;
    fx_make_splat(splat, &r, &s);
    free(s.log);
    char *splat_page = fx_join(splat, "report.html");
    /* three MAN runs compared */
    static const char *const methods[3] = {"e2e", "dgl", "dgl+man"};
    char *man[3];
    fx_man m[3];
    for (int k = 0; k < 3; k++) {
        man[k] = fx_join(root, methods[k]);
        fx_make_man(man[k], methods[k], &r, &m[k]);
    }
    char *man_page = fx_join(root, "man.html");
    ck_assert(report_write((const char *const *)man, 3, man_page) == PK_OK);
    /* LAE against seqft, plus a folder that does not exist */
    char *cl[3] = {fx_join(root, "lae"), fx_join(root, "seqft"), fx_join(root, "gone")};
    fx_cl c;
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(mkdir(cl[k], 0777), 0);
        fx_make_cl(cl[k], "cl", k ? "seqft" : "lae", &r, &c);
    }
    char *cl_page = fx_join(root, "cl.html");
    ck_assert(report_write((const char *const *)cl, 3, cl_page) == PK_OK);
    /* line plots: splat 8 (6 from log.csv, 2 from eval.csv); MAN 12 overlaid + 12 per run; cl 1
     * (average over tasks) */
    render(root, splat_page, 1100, 3200, false, 8, true);
    render(root, man_page, 390, 4000, true, 12 + 3 * 12, false);
    render(root, cl_page, 1100, 2000, true, 1, false);
    for (int k = 0; k < 3; k++)
        free(man[k]), free(cl[k]);
    free(splat), free(splat_page), free(man_page), free(cl_page);
    fx_rmrf(root);
}
END_TEST

int main(void) {
    if (!chromium()) {
        fprintf(stderr, "no chromium (install Debian's chromium, or set POLYAK_CHROMIUM): "
                        "skipped\n");
        return 77;
    }
    Suite *s = suite_create("report_chromium");
    TCase *tc = tcase_create("chromium");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pages_render);
    suite_add_tcase(s, tc);
    return pkt_run_suite(s);
}
