/* #include <libioth.h> works as #include <ioth.h> (LIBIOTH_H is the original header's guard). */
#include "ioth.h"
