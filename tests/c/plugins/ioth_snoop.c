/* Test plug-in "snoop": a plug-in that tries to reach into its application. Each socket() (once
 * the host's sandbox is in force) tries, against the application (the host's parent):
 * read /proc/<app>/environ, open /proc/<app>/mem read-write and write the int at the address
 * given as VNL "poke=<hex>", pidfd_open + pidfd_getfd (fd 0..63), ptrace ATTACH and SEIZE,
 * kill(app, 0) and kill(app, SIGUSR1), create a file outside its directory ("out=<path>"),
 * setns into /proc/1/ns/net, exec a program ("exec=<path>", e.g. a setuid copy of `id`) whose
 * stdout says its euid; then returns a kernel socket. Results go to the log file "log=<path>",
 * opened in newstack (before the sandbox), one line per reach: "<what> ok" or
 * "<what> <errno name>". With VNL "refuse", socket() then opens /etc/hostname and, refused by
 * the sandbox, fails with that errno (tests/audit.rs: the refusal shows in the audit trail).
 * With VNL "fork_in_thread", socket() starts a thread (so one started after the sandbox) that
 * forks a child living half a second, logs "forked <pid>" and waits for it (tests/audit.rs:
 * the child shows in the trail); with "run=<path>" too, the child runs "<path> 1" instead (a
 * sleep of a second). Its sandbox declaration, "read=@vnl", makes readable (and executable)
 * each VNL that is a directory's path (none of the others), so that a test can let it run a
 * program.
 * Used by tests/harden.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ioth.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int stackdata;
static int logfd = -1;
static uintptr_t poke;
static char out[512], exe[512];
static int refuse;
static int fork_thread;
static char run[512];

const char *ioth_snoop_sandbox = "read=@vnl";

static void report(const char *what, int ok) {
	char line[256];
	int n = ok ? snprintf(line, sizeof line, "%s ok\n", what)
		: snprintf(line, sizeof line, "%s %s\n", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	if (logfd >= 0 && write(logfd, line, n) < 0) { /* nothing to do */ }
}

void *ioth_snoop_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) f;
	for (int i = 0; vnlv && vnlv[i]; i++) {
		if (strncmp(vnlv[i], "log=", 4) == 0)
			logfd = open(vnlv[i] + 4, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		else if (strncmp(vnlv[i], "poke=", 5) == 0)
			poke = strtoull(vnlv[i] + 5, NULL, 16);
		else if (strncmp(vnlv[i], "out=", 4) == 0)
			snprintf(out, sizeof out, "%s", vnlv[i] + 4);
		else if (strcmp(vnlv[i], "refuse") == 0)
			refuse = 1;
		else if (strcmp(vnlv[i], "fork_in_thread") == 0)
			fork_thread = 1;
		else if (strncmp(vnlv[i], "run=", 4) == 0)
			snprintf(run, sizeof run, "%s", vnlv[i] + 4);
		else if (strncmp(vnlv[i], "exec=", 5) == 0)
			snprintf(exe, sizeof exe, "%s", vnlv[i] + 5);
	}
	return &stackdata;
}

static void *forker(void *arg) {
	(void) arg;
	pid_t c = fork();
	if (c == 0) {
		if (run[0])
			execl(run, run, "1", (char *) NULL);
		usleep(500000);
		_exit(0);
	}
	char line[64];
	int n = snprintf(line, sizeof line, "forked %d\n", (int) c);
	if (logfd >= 0 && write(logfd, line, n) < 0) { /* nothing to do */ }
	if (c > 0)
		waitpid(c, NULL, 0);
	return NULL;
}

int ioth_snoop_socket(int domain, int type, int protocol) {
	if (fork_thread) {
		pthread_t t;
		if (pthread_create(&t, NULL, forker, NULL) == 0)
			pthread_detach(t);
	}
	pid_t app = getppid();
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/environ", app);
	int fd = open(path, O_RDONLY);
	report("environ", fd >= 0 && read(fd, buf, sizeof buf) > 0);
	if (fd >= 0) close(fd);
	snprintf(path, sizeof path, "/proc/%d/mem", app);
	fd = open(path, O_RDWR);
	int v = 666;
	report("mem", fd >= 0 && pwrite(fd, &v, sizeof v, (off_t) poke) == sizeof v);
	if (fd >= 0) close(fd);
	int pfd = syscall(SYS_pidfd_open, app, 0);
	report("pidfd_open", pfd >= 0);
	int got = 0;
	errno = EBADF;
	for (int i = 0; pfd >= 0 && i < 64 && !got; i++) {
		int c = syscall(SYS_pidfd_getfd, pfd, i, 0);
		if (c >= 0) { got = 1; close(c); }
	}
	report("pidfd_getfd", got);
	if (pfd >= 0) close(pfd);
	report("ptrace_attach", ptrace(PTRACE_ATTACH, app, 0, 0) == 0);
	report("ptrace_seize", ptrace(PTRACE_SEIZE, app, 0, 0) == 0);
	report("kill0", kill(app, 0) == 0);
	report("sigusr1", kill(app, SIGUSR1) == 0);
	fd = out[0] ? open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
	report("write_outside", fd >= 0);
	if (fd >= 0) close(fd);
	fd = open("/proc/1/ns/net", O_RDONLY);
	report("setns", fd >= 0 && setns(fd, CLONE_NEWNET) == 0);
	if (fd >= 0) close(fd);
	if (exe[0]) {
		int p[2];
		if (pipe(p) == 0) {
			pid_t c = fork();
			if (c == 0) {
				dup2(p[1], 1);
				execl(exe, exe, "-u", (char *) NULL);
				_exit(100 + errno);
			}
			close(p[1]);
			ssize_t n = c > 0 ? read(p[0], buf, sizeof buf - 1) : -1;
			close(p[0]);
			int st = 0;
			if (c > 0) waitpid(c, &st, 0);
			if (n > 0) {
				buf[n] = 0;
				buf[strcspn(buf, "\n")] = 0;
				char line[300];
				snprintf(line, sizeof line, "exec euid %s\n", buf);
				if (write(logfd, line, strlen(line)) < 0) { /* nothing */ }
			} else {
				errno = WIFEXITED(st) && WEXITSTATUS(st) > 100 ? WEXITSTATUS(st) - 100 : EIO;
				report("exec", 0);
			}
		}
	}
	if (refuse) {
		int r = open("/etc/hostname", O_RDONLY | O_CLOEXEC);
		if (r < 0)
			return -1;
		close(r);
	}
	return socket(domain, type, protocol);
}
