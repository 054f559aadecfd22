/* support_version.c - keeps the test-support library non-empty before its helpers land. */
int pk_test_support_version(void) { return 1; }
