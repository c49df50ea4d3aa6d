/*
 * test_conf.c - the YAML reader itself (lib/conf/, mealy.h "Reading YAML
 * files"), apart from the supervisor's config and the machine loader
 * that stand on it: field tables with and without all_errors, null
 * values, repeated and unknown keys, lists, positions, quoting values in
 * messages, cutting messages, and what files it refuses to read.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mealy.h"

#define MAXMSG 16
static char msgs[MAXMSG][512];
static size_t nmsgs;

static void on_error(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (nmsgs < MAXMSG) mly_conf_format(m, msgs[nmsgs], sizeof msgs[0]);
  nmsgs++;
}

typedef struct obj {
  int64_t n;
  bool flag, saw_null;
  char *name;
  int items;
} obj;

static int f_n(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_int(c, v, "n", 0, 10, &((obj *)o)->n);
}

static int f_flag(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "flag", &((obj *)o)->flag);
}

static int f_name(mly_conf *c, void *o, mly_conf_node *v) {
  if (mly_conf_is_null(v)) {
    ((obj *)o)->saw_null = true;
    return 0;
  }
  return mly_conf_set_str(c, v, "name", &((obj *)o)->name);
}

static int item(mly_conf *c, void *o, mly_conf_node *v, size_t i) {
  int64_t x;
  int rc = mly_conf_get_int(c, v, "an item", 0, 9, &x);
  if (rc == 0) ((obj *)o)->items += (int)i + 1;
  return rc;
}

static int f_list(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_each(c, v, item, o);
}

static const mly_conf_field fields[] = {{"n", f_n, false},
                                        {"flag", f_flag, false},
                                        {"name", f_name, true},
                                        {"list", f_list, false}};

static int root(mly_conf *c, mly_conf_node *r) {
  return mly_conf_walk(c, r, fields, 4, "in the test", mly_conf_user(c));
}

static int parse(const char *y, bool all, obj *o) {
  memset(o, 0, sizeof *o);
  nmsgs = 0;
  mly_conf_options opt = {.path = "t.yaml", .all_errors = all,
                          .on_error = on_error, .user = o};
  return mly_conf_parse(&opt, y, strlen(y), root);
}

START_TEST(walk_values) {
  obj o;
  ck_assert_int_eq(parse("n: 7\nflag: True\nname: x\nlist: [1, 2]\n", false,
                         &o), 0);
  ck_assert_int_eq(o.n, 7);
  ck_assert(o.flag);
  ck_assert_str_eq(o.name, "x");
  ck_assert_int_eq(o.items, 3);
  ck_assert_uint_eq(nmsgs, 0);
  free(o.name);
  /* null: not set, unless the field asks to see it */
  ck_assert_int_eq(parse("n:\nflag: ~\nname: null\n", false, &o), 0);
  ck_assert_int_eq(o.n, 0);
  ck_assert(o.saw_null);
}
END_TEST

START_TEST(first_or_all) {
  const char *y = "n: 11\nbogus: 1\nflag: maybe\nn: 3\nlist: [1, x, 2, y]\n";
  obj o;
  ck_assert_int_eq(parse(y, false, &o), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_str_eq(msgs[0], "t.yaml:1:4: n must be at most 10, not 11");
  ck_assert_int_eq(parse(y, true, &o), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 6);
  ck_assert_str_eq(msgs[1], "t.yaml:2:1: unknown key 'bogus' in the test "
                            "(known: n, flag, name, list)");
  ck_assert_str_eq(msgs[2], "t.yaml:3:7: flag must be true or false, not "
                            "'maybe'");
  ck_assert_str_eq(msgs[3], "t.yaml:4:1: 'n' is set twice in the test "
                            "(first at 1:1); keep one");
  ck_assert_str_eq(msgs[4], "t.yaml:5:11: an item must be a whole number, "
                            "not 'x'");
  ck_assert_str_eq(msgs[5], "t.yaml:5:17: an item must be a whole number, "
                            "not 'y'");
  ck_assert_int_eq(o.items, 1 + 3); /* items 0 and 2 were read */
}
END_TEST

START_TEST(shapes) {
  obj o;
  ck_assert_int_eq(parse("[1]\n", true, &o), MLY_EINVAL);
  ck_assert_str_eq(msgs[0], "t.yaml:1:1: expected a map of settings in the "
                            "test, not a list");
  ck_assert_int_eq(parse("list: {a: 1}\n", true, &o), MLY_EINVAL);
  ck_assert_str_eq(msgs[0], "t.yaml:1:7: expected a list, not a map");
  ck_assert_int_eq(parse("name: \"a\\0b\"\n", true, &o), MLY_EINVAL);
  ck_assert_str_eq(msgs[0], "t.yaml:1:7: name contains a NUL character "
                            "(\\0); remove it");
  ck_assert_int_eq(parse("n: 1\n---\nn: 2\n", true, &o), MLY_EINVAL);
  ck_assert_str_eq(msgs[0], "t.yaml:3:1: another YAML document starts "
                            "here; keep the whole configuration in one");
}
END_TEST

START_TEST(show_and_format) {
  /* quoted values: control characters escaped, cut at 40 bytes */
  mly_conf_shown s = mly_conf_show("a\x1b[31mb");
  ck_assert_str_eq(s.s, "a\\x1b[31mb");
  s = mly_conf_show("0123456789012345678901234567890123456789XYZ");
  ck_assert_str_eq(s.s, "0123456789012345678901234567890123456789...");
  s = mly_conf_show("012345678901234567890123456789012345678\xc3\xa9Z");
  ck_assert_str_eq(s.s, "012345678901234567890123456789012345678...");
  /* a message cut to fit ends between characters */
  mly_conf_msg m = {"f.yaml", 3, 4, "\xc3\xa9\xc3\xa9\xc3\xa9"};
  char buf[32];
  ck_assert_str_eq(mly_conf_format(&m, buf, sizeof buf),
                   "f.yaml:3:4: \xc3\xa9\xc3\xa9\xc3\xa9");
  char small[16]; /* "f.yaml:3:4: " is 12 bytes: room for 1.5 of them */
  mly_conf_format(&m, small, sizeof small);
  ck_assert_str_eq(small, "f.yaml:3:4: \xc3\xa9");
  m.line = 0;
  ck_assert_str_eq(mly_conf_format(&m, buf, sizeof buf),
                   "f.yaml: \xc3\xa9\xc3\xa9\xc3\xa9");
}
END_TEST

START_TEST(reading_files) {
  char dir[] = "/tmp/conf-test-XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  mly_conf_options o = {.on_error = on_error};
  char *text;
  size_t len;
  nmsgs = 0;
  ck_assert_int_eq(mly_conf_read(&o, dir, &text, &len), -EISDIR);
  ck_assert_msg(strstr(msgs[0], ": cannot read: Is a directory"), "%s",
                msgs[0]);
  snprintf(path, sizeof path, "%s/fifo", dir);
  ck_assert_int_eq(mkfifo(path, 0600), 0);
  nmsgs = 0;
  ck_assert_int_eq(mly_conf_read(&o, path, &text, &len), MLY_EINVAL);
  ck_assert_msg(strstr(msgs[0], "fifo: cannot read: not a regular file"),
                "%s", msgs[0]);
  ck_assert_int_eq(unlink(path), 0);
  snprintf(path, sizeof path, "%s/big", dir);
  FILE *f = fopen(path, "w");
  for (int i = 0; i < (1 << 20) / 8 + 1; i++) fputs("#234567\n", f);
  fclose(f);
  ck_assert_int_eq(mly_conf_read(&o, path, &text, &len), 0);
  ck_assert_uint_eq(len, (1u << 20) + 1); /* enough to tell: too big */
  nmsgs = 0;
  mly_conf_options p = {.path = "big", .on_error = on_error};
  ck_assert_int_eq(mly_conf_parse(&p, text, len, root), MLY_EINVAL);
  ck_assert_str_eq(msgs[0], "big: is larger than 1 MiB; that is not a "
                            "configuration file");
  free(text);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *conf_suite(void) {
  Suite *s = suite_create("conf");
  TCase *tc = tcase_create("reader");
  tcase_add_test(tc, walk_values);
  tcase_add_test(tc, first_or_all);
  tcase_add_test(tc, shapes);
  tcase_add_test(tc, show_and_format);
  tcase_add_test(tc, reading_files);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(conf_suite)
