/*
 * Output folders of the simulator's commands (see sl_sim_out.h).
 *
 * One implementation for compare and matrix, which had a copy each. Every
 * failure names the command (prog) and the path, and a write is checked
 * at the close, where a full disk shows, so that no command leaves a
 * truncated CSV behind it as if it were whole.
 */
#include "bench/sim/sl_sim_out.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool sl_sim_out_mkdir(const char *prog, const char *path)
{
    struct stat sb;
    if (mkdir(path, 0755) == 0 || (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return true;
    fprintf(stderr, "%s: cannot make folder %s: %s\n", prog, path,
            errno == EEXIST ? "not a folder" : strerror(errno));
    return false;
}

bool sl_sim_out_dir(const char *prog, char *dir, size_t cap, const char *prefix)
{
    if (dir[0])
        return sl_sim_out_mkdir(prog, dir);
    const char *tmp = getenv("TMPDIR");
    char path[PATH_MAX];
    int len = snprintf(path, sizeof(path), "%s/%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", prefix);
    if (len < 0 || (size_t)len >= sizeof(path) || (size_t)len >= cap) {
        fprintf(stderr, "%s: $TMPDIR is too long for a folder name\n", prog);
        return false;
    }
    if (!mkdtemp(path)) {
        fprintf(stderr, "%s: cannot make a folder %s: %s\n", prog, path, strerror(errno));
        return false;
    }
    memcpy(dir, path, (size_t)len + 1);
    return true;
}

FILE *sl_sim_out_open(const char *prog, const char *dir, const char *name)
{
    char path[PATH_MAX];
    int len = snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = len >= 0 && (size_t)len < sizeof(path) ? fopen(path, "w") : NULL;
    if (!f)
        fprintf(stderr, "%s: cannot write %s/%s: %s\n", prog, dir, name,
                len >= 0 && (size_t)len < sizeof(path) ? strerror(errno) : "path too long");
    return f;
}

bool sl_sim_out_close(const char *prog, FILE *f, const char *dir, const char *name)
{
    bool ok = !ferror(f);
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "%s: cannot write %s/%s\n", prog, dir, name);
    return ok;
}
