// cogent-run: being written.
int main() { return 2; }
