/*
 * embed_gen.c - build tool: turns a file into a C array, so that
 * `mealy supervise` carries its demo configuration inside the binary.
 *   embed_gen INPUT OUTPUT SYMBOL
 */
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: embed_gen INPUT OUTPUT SYMBOL\n");
    return 2;
  }
  FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "w");
  if (in == NULL || out == NULL) {
    perror("embed_gen");
    return 1;
  }
  fprintf(out, "/* generated from %s */\nconst char %s[] = {\n", argv[1], argv[3]);
  unsigned long n = 0;
  int c;
  while ((c = fgetc(in)) != EOF) {
    fprintf(out, "%d,%s", c, ++n % 20 ? "" : "\n");
  }
  fprintf(out, "0};\nconst unsigned long %s_len = %lu;\n", argv[3], n);
  fclose(in);
  return fclose(out) == 0 ? 0 : 1;
}
