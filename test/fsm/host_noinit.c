/* host_noinit.c - a shared object without mly_actions_init: refused by
 * `mealy fsm run --actions` (test_fsm_host.sh). */
int mly_not_the_init(void);
int mly_not_the_init(void) { return 0; }
