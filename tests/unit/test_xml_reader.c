/*
 * Unit tests of the XML reader (xml_reader.c): records paths, namespaces,
 * attributes, nested and repeated children, CDATA, entities, encodings,
 * malformed files, XXE and billion laughs, limits and a 200 MB document
 * streamed in little memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libxml/parserInternals.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#include "reader_test_util.h"

/* Rows as text (struct rt_coll): "R1 name=value|name=value\n". */
static int c_row(void *ud, const struct sl_row *row)
{
    struct rt_coll *c = ud;
    assert_null(row->error);
    assert_int_equal(row->row, ++c->rows);
    sl_buf_printf(&c->out, "R%llu ", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        assert_non_null(row->values[i]);
        assert_int_equal(strlen(row->values[i]), row->lens[i]);
        assert_true(sl_utf8_valid(row->values[i], row->lens[i]));
        sl_buf_printf(&c->out, "%s%s=%s", i ? "|" : "", row->names[i], row->values[i]);
    }
    sl_buf_putc(&c->out, '\n');
    return row->row == c->stop_at ? 7 : 0;
}

/* Reads len bytes of data with records (NULL: root's children); *out gets
 * the rows (caller frees), err the message. Returns the reader's result. */
static enum sl_encoding g_last_enc;

static int run_n(const void *data, size_t len, const struct sl_xml_opts *o, char **out, char *err,
                 size_t errsz)
{
    struct rt_coll c = {.out = SL_BUF_INIT};
    sl_buf_puts(&c.out, "");
    int fd = rt_mem_fd(data, len);
    struct sl_reader_stats st = {0};
    char e[1024] = "";
    int rc = sl_xml_read_fd(fd, o, c_row, &c, &st, e, sizeof(e));
    close(fd);
    g_last_enc = st.encoding;
    if (rc == 0)
        assert_int_equal(st.bytes, len);
    if (rc < 0)
        assert_true(e[0] != '\0');
    assert_int_equal(st.rows, c.rows);
    *out = sl_buf_steal(&c.out);
    if (err)
        snprintf(err, errsz, "%s", e);
    return rc;
}

static int run(const char *xml, const char *records, char **out, char *err, size_t errsz)
{
    struct sl_xml_opts o = {.records = records};
    return run_n(xml, strlen(xml), &o, out, err, errsz);
}

/* Expects xml to give exactly rows. */
static void expect(const char *xml, const char *records, const char *rows)
{
    char *out, err[1024];
    int rc = run(xml, records, &out, err, sizeof(err));
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    assert_string_equal(out, rows);
    free(out);
}

/* Expects xml to fail with rc and a message that contains msg. */
static void expect_fail(const char *xml, const char *records, int rc, const char *msg)
{
    char *out, err[1024];
    int r = run(xml, records, &out, err, sizeof(err));
    free(out);
    assert_int_equal(r, rc);
    if (!strstr(err, msg))
        fail_msg("message '%s' lacks '%s'", err, msg);
}

static void test_records_path(void **state)
{
    (void)state;
    const char *xml = "<?xml version=\"1.0\"?>\n"
                      "<Stores>\n"
                      "  <Info><Name>ignored</Name></Info>\n"
                      "  <Store id=\"1\"><Name>Alpha</Name><City>Berlin</City></Store>\n"
                      "  <Store id=\"2\"><City>Paris</City><Name>Beta</Name></Store>\n"
                      "  <!-- a comment --><?pi x?>\n"
                      "</Stores>\n";
    expect(xml, "/Stores/Store",
           "R1 @id=1|Name=Alpha|City=Berlin\n"
           "R2 @id=2|City=Paris|Name=Beta\n");
    /* NULL: every child of the root */
    expect(xml, NULL,
           "R1 Name=ignored\n"
           "R2 @id=1|Name=Alpha|City=Berlin\n"
           "R3 @id=2|City=Paris|Name=Beta\n");
    /* deeper records, only under the right parents */
    expect("<a><b><c x=\"1\"/></b><d><c x=\"2\"/></d><b><c>t</c></b></a>", "/a/b/c",
           "R1 @x=1\nR2 #text=t\n");
    /* the root itself as the one record */
    expect("<Store id=\"9\"><Name>N</Name></Store>", "/Store", "R1 @id=9|Name=N\n");
    /* an empty list: no rows, no error */
    expect("<Stores/>", "/Stores/Store", "");
    expect("<Stores><Other/></Stores>", "/Stores/Store", "");
    /* a root that does not match, a parent never found */
    expect_fail("<Shops><Shop/></Shops>", "/Stores/Store", SL_ERR_PARSE,
                "no element matches /Stores/Store: the root element is <Shops>");
    expect_fail("<a><x><c/></x></a>", "/a/b/c", SL_ERR_PARSE, "no element matches /a/b/c");
    expect_fail("<a/>", "a/b", SL_ERR_INVALID, "must look like /Stores/Store");
    expect_fail("<a/>", "/a//b", SL_ERR_INVALID, "empty element name");
    /* the callback stops the reader */
    struct rt_coll c = {.out = SL_BUF_INIT, .stop_at = 1};
    int fd = rt_mem_fd(xml, strlen(xml));
    struct sl_xml_opts o = {.records = "/Stores/Store"};
    char err[256];
    assert_int_equal(sl_xml_read_fd(fd, &o, c_row, &c, NULL, err, sizeof(err)), 7);
    assert_int_equal(c.rows, 1);
    close(fd);
    sl_buf_cleanup(&c.out);
}

static void test_namespaces(void **state)
{
    (void)state;
    const char *rows = "R1 @id=1|Name=A\n";
    expect("<s:Stores xmlns:s=\"urn:s\"><s:Store id=\"1\"><s:Name>A</s:Name></s:Store>"
           "</s:Stores>",
           "/Stores/Store", rows);
    expect("<Stores xmlns=\"urn:s\"><Store id=\"1\" xmlns:x=\"urn:x\"><Name>A</Name></Store>"
           "</Stores>",
           "/Stores/Store", rows);
    /* a prefix in the path is ignored too */
    expect("<Stores xmlns=\"urn:s\"><Store x:id=\"1\" xmlns:x=\"urn:x\"><x:Name>A</x:Name></Store>"
           "</Stores>",
           "/s:Stores/s:Store", rows);
}

static void test_attributes_nested(void **state)
{
    (void)state;
    expect("<r><Store id=\"7\" kind=\"shop\">\n"
           "  <Address type=\"main\"><Street>Hauptstr. 1</Street><City zip=\"10115\">Berlin</City>"
           "</Address>\n"
           "  <Phone type=\"work\">111</Phone><Phone>222</Phone><Phone>333</Phone>\n"
           "  <Fax/><Empty></Empty><Blank>  \n </Blank>\n"
           "  <Note>Hello <b>bold</b> world</Note>own text</Store></r>",
           "/r/Store",
           "R1 @id=7|@kind=shop|Address/@type=main|Address/Street=Hauptstr. 1|"
           "Address/City/@zip=10115|Address/City=Berlin|Phone/@type=work|Phone=111|Phone_2=222|"
           "Phone_3=333|Fax=|Empty=|Blank=|Note=Hello  world|Note/b=bold|#text=own text\n");
    /* text is kept exactly, blank pieces of mixed content are dropped */
    expect("<r><s>\n  <a>x</a>\n  own\n  <b/>  text </s></r>", "/r/s",
           "R1 a=x|#text=\n  own\n    text |b=\n");
    /* repeated containers number the path; values kept exactly */
    expect("<r><s><P><N> 1 </N></P><P><N>2</N><N>3</N></P></s></r>", "/r/s",
           "R1 P/N= 1 |P_2/N=2|P_2/N_2=3\n");
    /* two attributes with one local name */
    expect("<r><s xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" a:x=\"1\" b:x=\"2\"/></r>", "/r/s",
           "R1 @x=1|@x_2=2\n");
    /* fields are per record */
    expect("<r><s><a>1</a><a>2</a></s><s><b>3</b><a>4</a></s></r>", "/r/s",
           "R1 a=1|a_2=2\nR2 b=3|a=4\n");
}

static void test_cdata_entities(void **state)
{
    (void)state;
    expect("<r><s><c><![CDATA[<b>&amp;</b>]]></c><t>a &amp; b &lt; &#x20AC; &#8364;</t>"
           "<u a=\"&quot;x&quot; &#233;\">x<![CDATA[y]]>z</u></s></r>",
           "/r/s",
           "R1 c=<b>&amp;</b>|t=a & b < \xe2\x82\xac \xe2\x82\xac|u/@a=\"x\" \xc3\xa9|u=xyz\n");
    /* whitespace between text pieces is kept, around element tags not */
    expect("<!DOCTYPE r [<!ENTITY co \"ACME\">]><r><s><a>  <![CDATA[x]]> &co; </a>"
           "<b><![CDATA[ ]]></b><c>\n <i/>\n</c></s></r>",
           "/r/s", "R1 a=  x ACME|b=|c/i=\n");
    /* an internal entity of plain text is expanded */
    expect("<!DOCTYPE r [<!ENTITY co \"ACME &#233;\">]><r><s n=\"&co;!\"><c>[&co;]</c></s></r>",
           "/r/s", "R1 @n=ACME \xc3\xa9!|c=[ACME \xc3\xa9]\n");
}

static void test_encodings(void **state)
{
    (void)state;
    expect("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r><s c=\"M\xfcnchen\">"
           "Stra\xdf"
           "e</s></r>",
           "/r/s",
           "R1 @c=M\xc3\xbcnchen|#text=Stra\xc3\x9f"
           "e\n");
    assert_int_equal(g_last_enc, SL_ENC_LATIN1);
    /* UTF-16 LE with a BOM */
    const char *src =
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?><r><s>\xc3\xa9\xe2\x82\xac</s></r>";
    unsigned char buf[256];
    size_t n = 0;
    buf[n++] = 0xff;
    buf[n++] = 0xfe;
    for (const unsigned char *p = (const unsigned char *)src; *p;) {
        unsigned cp;
        if (*p < 0x80)
            cp = *p++;
        else if (*p < 0xe0)
            cp = (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu), p += 2;
        else
            cp = (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu), p += 3;
        buf[n++] = cp & 0xff;
        buf[n++] = cp >> 8;
    }
    char *out, err[512];
    struct sl_xml_opts o = {.records = "/r/s"};
    assert_int_equal(run_n(buf, n, &o, &out, err, sizeof(err)), 0);
    assert_string_equal(out, "R1 #text=\xc3\xa9\xe2\x82\xac\n");
    assert_int_equal(g_last_enc, SL_ENC_UTF16);
    free(out);
    /* a UTF-8 BOM */
    expect("\xef\xbb\xbf<r><s>x</s></r>", "/r/s", "R1 #text=x\n");
    /* an overlong form in CDATA, which libxml2 2.9 lets through */
    expect_fail("<r><s><c><![CDATA[\xc1\x87]]></c></s></r>", "/r/s", SL_ERR_PARSE,
                "record 1: the field 'c' is not valid UTF-8");
    /* bytes invalid in the declared encoding */
    expect_fail("<r><s>\xff\xfe</s></r>", "/r/s", SL_ERR_PARSE, "malformed XML at line 1");
}

static void test_malformed(void **state)
{
    (void)state;
    expect_fail("<r><s><a>1</a></s><s><a>2", "/r/s", SL_ERR_PARSE, "malformed XML at line 1");
    expect_fail("<r>\n<s>\n<a>1</b></s></r>", "/r/s", SL_ERR_PARSE,
                "malformed XML at line 3, column");
    expect_fail("<r><s a=1/></r>", "/r/s", SL_ERR_PARSE, "malformed XML");
    expect_fail("", "/r/s", SL_ERR_PARSE, "the file is empty");
    expect_fail("   \n", NULL, SL_ERR_PARSE, "");
    expect_fail("<r></r><r2/>", NULL, SL_ERR_PARSE, "malformed XML");
    expect_fail("<r>\n<s>&undeclared;</s></r>", "/r/s", SL_ERR_PARSE,
                "malformed XML at line 2, column 16: Entity 'undeclared' not defined");
    /* rows before the error were handed over */
    char *out, err[512];
    assert_int_equal(run("<r><s>1</s><s>2</s><s>3", "/r/s", &out, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(out, "R1 #text=1\nR2 #text=2\n");
    free(out);
}

static void test_xxe(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-xxe-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SECRET-XXE", 10), 10);
    close(fd);
    char xml[1024];
    const char *rec = "/r/s";
    /* an external entity in content, in an attribute, a parameter entity
     * pulling an external DTD, an external DTD subset */
    snprintf(xml, sizeof(xml), "<!DOCTYPE r [<!ENTITY x SYSTEM \"file://%s\">]><r><s>&x;</s></r>",
             path);
    expect_fail(xml, rec, SL_ERR_PARSE, "external entities are not allowed (&x;)");
    snprintf(xml, sizeof(xml), "<!DOCTYPE r [<!ENTITY x SYSTEM \"%s\">]><r><s>&x;</s></r>", path);
    expect_fail(xml, rec, SL_ERR_PARSE, "external entities are not allowed (&x;)");
    snprintf(xml, sizeof(xml),
             "<!DOCTYPE r [<!ENTITY x SYSTEM \"file://%s\">]><r><s a=\"&x;\"/></r>", path);
    char *out, err[1024];
    int rc = run(xml, rec, &out, err, sizeof(err));
    assert_int_not_equal(rc, 0); /* libxml2 refuses external entities in attributes */
    assert_null(strstr(out, "SECRET"));
    assert_null(strstr(err, "SECRET"));
    free(out);
    snprintf(xml, sizeof(xml),
             "<!DOCTYPE r [<!ENTITY %% p SYSTEM \"file://%s\"> %%p;]><r><s>t</s></r>", path);
    rc = run(xml, rec, &out, err, sizeof(err));
    assert_int_equal(rc, 0); /* the parameter entity is never loaded */
    assert_string_equal(out, "R1 #text=t\n");
    assert_null(strstr(err, "SECRET"));
    free(out);
    snprintf(xml, sizeof(xml), "<!DOCTYPE r SYSTEM \"file://%s\"><r><s>t</s></r>", path);
    rc = run(xml, rec, &out, err, sizeof(err));
    assert_int_equal(rc, 0); /* the external subset is never read */
    assert_string_equal(out, "R1 #text=t\n");
    free(out);
    /* the second lock: libxml2's loader refuses everything once the reader
     * has run, whatever options a future change might pass */
    char url[600];
    snprintf(url, sizeof(url), "file://%s", path);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    assert_non_null(ctxt);
    xmlParserInputPtr in = xmlLoadExternalEntity(url, NULL, ctxt);
    assert_null(in);
    in = xmlLoadExternalEntity(path, NULL, ctxt);
    assert_null(in);
    xmlFreeParserCtxt(ctxt);
    /* network: never fetched (NONET + the loader) */
    expect_fail("<!DOCTYPE r [<!ENTITY x SYSTEM \"http://127.0.0.1:9/x\">]><r><s>&x;</s></r>", rec,
                SL_ERR_PARSE, "external entities are not allowed");
    unlink(path);
}

static void test_billion_laughs(void **state)
{
    (void)state;
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for (int i = 1; i <= 9; i++) {
        sl_buf_printf(&b, "<!ENTITY lol%d \"", i);
        for (int k = 0; k < 10; k++)
            sl_buf_printf(&b, "&lol%s;", i == 1 ? "" : (char[]){(char)('0' + i - 1), 0});
        sl_buf_puts(&b, "\">\n");
    }
    sl_buf_puts(&b, "]>\n");
    size_t pre = b.len;
    const char *bodies[] = {
        "<lolz><s>&lol9;</s></lolz>",
        "<lolz><s a=\"&lol9;\"/></lolz>",
        "<lolz><s>&lol9;&lol9;&lol9;&lol9;&lol9;&lol9;&lol9;&lol9;</s></lolz>",
    };
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        b.len = pre;
        sl_buf_puts(&b, bodies[i]);
        char *out, err[1024];
        double t0 = rt_now();
        int rc = run(b.data, "/lolz/s", &out, err, sizeof(err));
        double t = rt_now() - t0;
        assert_int_equal(rc, SL_ERR_PARSE);
        assert_non_null(strstr(err, "Detected an entity reference loop"));
        assert_string_equal(out, "");
        free(out);
        if (t > 2.0)
            fail_msg("billion laughs %zu took %.2f s", i, t);
    }
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    /* peak RSS grew by less than 64 MB */
    rt_assert_rss_growth(&ru0, &ru1, 64 * 1024);
    /* quadratic blowup: one big entity referenced many times */
    b.len = 0;
    sl_buf_puts(&b, "<!DOCTYPE r [<!ENTITY a \"");
    for (int i = 0; i < 50000; i++)
        sl_buf_putc(&b, 'a');
    sl_buf_puts(&b, "\">]><r><s>");
    for (int i = 0; i < 50000; i++)
        sl_buf_puts(&b, "&a;");
    sl_buf_puts(&b, "</s></r>");
    char *out, err[1024];
    double t0 = rt_now();
    int rc = run(b.data, "/r/s", &out, err, sizeof(err));
    assert_true(rt_now() - t0 < 2.0);
    assert_int_equal(rc, SL_ERR_LIMIT); /* 2.5 GB would exceed max_value */
    assert_non_null(strstr(err, "record 1: the value of '#text' is longer than"));
    free(out);
    sl_buf_cleanup(&b);
}

static void test_limits(void **state)
{
    (void)state;
    char *out, err[1024];
    struct sl_xml_opts o = {.records = "/r/s", .max_value = 4};
    const char *x = "<r><s><a>1234</a></s><s><a>12345</a></s></r>";
    assert_int_equal(run_n(x, strlen(x), &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(out, "R1 a=1234\n");
    assert_string_equal(err, "record 2: the value of 'a' is longer than 4 bytes");
    free(out);
    x = "<r><s><a>12</a><a>34</a><a>5</a></s></r>"; /* pieces of one value add up */
    o.max_value = 4;
    x = "<r><s>12<b/>345</s></r>";
    assert_int_equal(run_n(x, strlen(x), &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    free(out);
    o = (struct sl_xml_opts){.records = "/r/s", .max_fields = 3};
    x = "<r><s a=\"1\"><b/><c/></s><s a=\"1\"><b/><c/><d/></s></r>";
    assert_int_equal(run_n(x, strlen(x), &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(out, "R1 @a=1|b=|c=\n");
    assert_string_equal(err, "record 2: more than 3 fields");
    free(out);
    o = (struct sl_xml_opts){.records = "/r/s", .max_depth = 4};
    x = "<r><s><a><b>x</b></a></s><s><a><b><c>y</c></b></a></s></r>";
    assert_int_equal(run_n(x, strlen(x), &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(out, "R1 a/b=x\n");
    assert_string_equal(err, "record 2: elements nested deeper than 4");
    free(out);
    x = "<r><x><y><z><w/></z></y></x></r>";
    assert_int_equal(run_n(x, strlen(x), &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "line 1: elements nested deeper than 4");
    free(out);
    /* deeper than libxml2's own limit of 256 */
    struct sl_buf b = SL_BUF_INIT;
    for (int i = 0; i < 300; i++)
        sl_buf_puts(&b, "<a>");
    o = (struct sl_xml_opts){0};
    assert_true(run_n(b.data, b.len, &o, &out, err, sizeof(err)) < 0);
    free(out);
    sl_buf_cleanup(&b);
}

/* A generator in a child process writes a ~200 MB document into a pipe. */
static int gen_pipe(pid_t *pid, long nrec)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    *pid = fork();
    assert_true(*pid >= 0);
    if (*pid == 0) {
        close(p[0]);
        FILE *f = fdopen(p[1], "w");
        if (!f)
            _exit(1);
        /* an entity in every record: entity references must not make the
         * reader keep the nodes it has passed */
        fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<!DOCTYPE Stores [<!ENTITY co \"ACME\">]>\n<Stores xmlns=\"urn:x\">\n",
              f);
        for (long i = 1; i <= nrec; i++)
            fprintf(f,
                    "  <Store id=\"%ld\"><Name>Store %ld</Name><Address type=\"main\">"
                    "<Street>Hauptstra\xc3\x9f"
                    "e %ld</Street><City>M\xc3\xbcnchen</City></Address>"
                    "<Phone>+49 89 %ld</Phone><Phone>+49 30 %ld</Phone>"
                    "<Note><![CDATA[a note with <markup> & stuff]]> &co;</Note></Store>\n",
                    i, i, i, i, i);
        fputs("</Stores>\n", f);
        _exit(fclose(f) ? 1 : 0);
    }
    close(p[1]);
    return p[0];
}

struct big {
    uint64_t rows;
    bool ok;
};

static int big_row(void *ud, const struct sl_row *row)
{
    struct big *b = ud;
    b->rows++;
    if (row->n != 8 || strcmp(row->names[0], "@id") || strcmp(row->names[6], "Phone_2") ||
        strtoull(row->values[0], NULL, 10) != row->row ||
        strcmp(row->values[7], "a note with <markup> & stuff ACME"))
        b->ok = false;
    return 0;
}

static void test_big_stream(void **state)
{
    (void)state;
    const long nrec = READER_TEST_ASAN ? 100000 : 800000; /* ~256 bytes each: ~200 MB */
    pid_t pid;
    int fd = gen_pipe(&pid, nrec);
    struct big b = {.ok = true};
    struct sl_reader_stats st = {0};
    char err[512];
    struct sl_xml_opts o = {.records = "/Stores/Store"};
    struct rt_stream m;
    rt_stream_start(&m);
    int rc = sl_xml_read_fd(fd, &o, big_row, &b, &st, err, sizeof(err));
    rt_stream_stop(&m);
    close(fd);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(b.rows, nrec);
    assert_true(b.ok);
    assert_true(st.bytes > (uint64_t)nrec * 240);
    rt_stream_report(&m, "xml", st.bytes, "", b.rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_big_stream),
        cmocka_unit_test(test_records_path),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_attributes_nested),
        cmocka_unit_test(test_cdata_entities),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_xxe),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
