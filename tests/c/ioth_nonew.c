/* A plug-in that has no ioth_nonew_newstack: loading it must fail with ENOENT. */
#include <sys/socket.h>

int ioth_nonew_socket(int domain, int type, int protocol)
{
	return socket(domain, type, protocol);
}
