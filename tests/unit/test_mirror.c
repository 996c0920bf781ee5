/*
 * test_mirror.c: what a mirrored copy keeps of an answer and how two answers
 * are compared (JSON paths, ignored paths, chunked bodies, path patterns).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/alloc.h"
#include "proxy/mirror.h"

static const char *const json_ct[] = {"content-type"};
static struct sy_mirror_conf conf = {.max_response = 4096, .headers = (char **)json_ct,
                                     .nheaders = 1};

static void capture(struct sy_mirror_cap *c, int status, const char *ctype, const char *body,
                    int chunked)
{
    struct sy_h1_header h[1] = {{SY_STR_LIT("Content-Type"), sy_str_cstr(ctype)}};
    struct sy_h1_response r = {.status = status, .headers = h, .num_headers = 1};
    memset(c, 0, sizeof(*c));
    sy_mirror_cap_head(c, &conf, &r, chunked);
    /* byte by byte: the result may not depend on how the body arrives */
    for (size_t i = 0; body[i]; i++)
        sy_mirror_cap_body(c, &conf, body + i, 1);
    c->done = 1;
}

static int ignore_list(void *arg, const char *path)
{
    for (const char *const *p = arg; *p; p++)
        if (sy_mirror_path_match(*p, path))
            return 1;
    return 0;
}

Test(mirror, json_paths_that_differ)
{
    struct sy_mirror_cap a, b;
    struct sy_mirror_diff d;
    capture(&a, 200, "application/json", "{\"retro\":{\"items\":[{\"done\":false},{\"done\":false},"
                                         "{\"done\":false},{\"done\":false}],\"x\":1,\"gone\":2}}", 0);
    capture(&b, 200, "application/json", "{\"retro\":{\"x\":1,\"items\":[{\"done\":false},"
                                         "{\"done\":false},{\"done\":false},{\"done\":true}],"
                                         "\"new key\":3}}", 0);
    sy_mirror_compare(&conf, &a, &b, NULL, NULL, &d);
    cr_assert(d.body && d.body_json && !d.status && !d.headers);
    cr_assert_eq(d.npaths, 3);
    cr_assert_str_eq(d.paths[0], "$.retro.items[3].done");
    cr_assert_str_eq(d.paths[1], "$.retro.gone");
    cr_assert_str_eq(d.paths[2], "$.retro[\"new key\"]");
    sy_mirror_diff_free(&d);

    /* ".*" matches a name step; a quoted key stays */
    const char *ign[] = {"$.retro.items[*].done", "$.retro.*", NULL};
    sy_mirror_compare(&conf, &a, &b, ignore_list, (void *)ign, &d);
    cr_assert(d.body);
    cr_assert_eq(d.npaths, 1);
    cr_assert_str_eq(d.paths[0], "$.retro[\"new key\"]");
    sy_mirror_diff_free(&d);
    const char *all[] = {"$.retro", NULL};
    sy_mirror_compare(&conf, &a, &b, ignore_list, (void *)all, &d);
    cr_assert(!d.body);
    cr_assert_eq(d.npaths, 0);
    sy_mirror_cap_free(&a);
    sy_mirror_cap_free(&b);
}

Test(mirror, equal_json_in_another_order_is_no_difference)
{
    struct sy_mirror_cap a, b;
    struct sy_mirror_diff d;
    capture(&a, 200, "application/json", "{\"a\":1,\"b\":[1,2]}", 0);
    capture(&b, 200, "application/json; charset=utf-8", "{ \"b\": [1, 2], \"a\": 1 }", 0);
    sy_mirror_compare(&conf, &a, &b, NULL, NULL, &d);
    cr_assert(!d.body && !d.status);
    cr_assert_eq(d.headers, 1); /* the header differs by its parameter */
    sy_mirror_cap_free(&a);
    sy_mirror_cap_free(&b);
}

Test(mirror, chunked_bodies_are_dechunked_and_hashed)
{
    struct sy_mirror_cap a, b;
    struct sy_mirror_diff d;
    capture(&a, 200, "text/plain", "hello world", 0);
    capture(&b, 200, "text/plain", "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n", 1);
    cr_assert_eq(b.total, 11);
    cr_assert_eq(memcmp(b.body, "hello world", 11), 0);
    sy_mirror_compare(&conf, &a, &b, NULL, NULL, &d);
    cr_assert(!d.body && !d.body_json);
    sy_mirror_cap_free(&b);
    capture(&b, 200, "text/plain", "hello World", 0);
    sy_mirror_compare(&conf, &a, &b, NULL, NULL, &d);
    cr_assert(d.body && !d.body_json);
    sy_mirror_cap_free(&a);
    sy_mirror_cap_free(&b);
}

Test(mirror, capture_is_bounded_and_truncated_json_compares_by_hash)
{
    struct sy_mirror_conf small = conf;
    small.max_response = 8;
    struct sy_mirror_cap a = {0};
    struct sy_h1_header h[1] = {{SY_STR_LIT("Content-Type"), SY_STR_LIT("application/json")}};
    struct sy_h1_response r = {.status = 200, .headers = h, .num_headers = 1};
    sy_mirror_cap_head(&a, &small, &r, 0);
    sy_mirror_cap_body(&a, &small, "{\"k\":\"0123456789\"}", 18);
    cr_assert(a.truncated);
    cr_assert_eq(a.blen, 8);
    cr_assert_eq(a.total, 18);
    sy_mirror_cap_free(&a);
}

Test(mirror, path_match)
{
    cr_assert(sy_mirror_path_match("$.a", "$.a"));
    cr_assert(sy_mirror_path_match("$.a", "$.a.b"));
    cr_assert(sy_mirror_path_match("$.a", "$.a[3]"));
    cr_assert(!sy_mirror_path_match("$.a", "$.ab"));
    cr_assert(sy_mirror_path_match("$.items[*].id", "$.items[12].id"));
    cr_assert(!sy_mirror_path_match("$.items[*].id", "$.items.id"));
    cr_assert(sy_mirror_path_match("$.*.at", "$.x.at"));
    cr_assert(sy_mirror_path_match("$.items[*].id", "$.items[*].id"));
    cr_assert(sy_mirror_path_match("$", "$.anything"));
}

Test(mirror, path_patterns)
{
    char out[64];
    sy_mirror_pattern("/api/retros/17/items/3?x=1", 26, out, sizeof(out));
    cr_assert_str_eq(out, "/api/retros/:id/items/:id");
    sy_mirror_pattern("/api/v2/retros/0f8fad5b-d9cb-469f-a165-70867728950e", 51, out, sizeof(out));
    cr_assert_str_eq(out, "/api/v2/retros/:id");
    sy_mirror_pattern("/", 1, out, sizeof(out));
    cr_assert_str_eq(out, "/");
    sy_mirror_pattern("/cafe/face", 10, out, sizeof(out));
    cr_assert_str_eq(out, "/cafe/face");
}
