/*
** Tab completion of globals, table fields and methods (`vm:add_<Tab>`).
** The word before the cursor is split at its last '.' or ':'; the part
** before is resolved from _G and the keys of what it names are offered.
** Everything is read raw (rawget, next, the metatable's __index when it is
** a table), so completing never runs user code: no __index functions, no
** __pairs, no getters. Methods of userdata (orrery.VM, orrery.Builder, a
** string's) come from their metatable's __index table.
*/
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "repl.h"

#define MAX_DEPTH 8 /* __index chains followed */

static orr_repl *active;

/* The candidates of the current completion, handed out by generator(). */
static struct {
  char **items;
  size_t n, cap, next;
  int single_type; /* Lua type of the value when there is one candidate */
} cands;

static const char *const keywords[] = {
    "and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
    "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
    "repeat",   "return", "then", "true", "until",  "while", NULL};

static int is_ident(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
    return 0;
  for (size_t i = 1; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
          ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
      return 0;
  return 1;
}

static void clear_cands(void) {
  for (size_t i = 0; i < cands.n; i++)
    free(cands.items[i]);
  cands.n = cands.next = 0;
}

static void add_cand(const char *prefix, size_t plen, const char *key,
                     int type) {
  size_t klen = strlen(key);
  char *s;
  if (cands.n == cands.cap) {
    size_t cap = cands.cap ? cands.cap * 2 : 32;
    char **items = realloc(cands.items, cap * sizeof *items);
    if (items == NULL)
      return;
    cands.items = items;
    cands.cap = cap;
  }
  if ((s = malloc(plen + klen + 1)) == NULL)
    return;
  memcpy(s, prefix, plen);
  memcpy(s + plen, key, klen + 1);
  cands.items[cands.n++] = s;
  cands.single_type = type;
}

/* Pushes the raw __index table of the value at idx's metatable, or
** returns 0 (pushing nothing). */
static int index_table(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx))
    return 0;
  lua_pushliteral(L, "__index");
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_remove(L, -2);
  return 1;
}

/* Replaces the value at the top with its field key, read raw through
** __index tables; nil when there is none. */
static void field(lua_State *L, const char *key, size_t klen) {
  int t = lua_gettop(L);
  for (int depth = 0; depth < MAX_DEPTH; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushlstring(L, key, klen);
      if (lua_rawget(L, -2) != LUA_TNIL) {
        lua_replace(L, t);
        lua_settop(L, t);
        return;
      }
      lua_pop(L, 1);
    }
    if (!index_table(L, -1))
      break;
  }
  lua_settop(L, t);
  lua_pushnil(L);
  lua_replace(L, t);
}

/* Offers the keys of the value at the top (and of its __index tables)
** that start with part; pops the value. seen dedups (at index seen). */
static void offer(lua_State *L, int seen, const char *prefix, size_t plen,
                  const char *part, size_t partlen, int methods) {
  for (int depth = 0; depth < MAX_DEPTH; depth++) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        size_t klen;
        const char *k;
        int type = lua_type(L, -1);
        if (lua_type(L, -2) == LUA_TSTRING &&
            (k = lua_tolstring(L, -2, &klen)) != NULL && klen >= partlen &&
            memcmp(k, part, partlen) == 0 && is_ident(k, klen) &&
            (!methods || type == LUA_TFUNCTION)) {
          lua_pushvalue(L, -2);
          if (lua_rawget(L, seen) == LUA_TNIL) {
            lua_pushvalue(L, -3);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            add_cand(prefix, plen, k, type);
          }
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    if (!index_table(L, -1))
      break;
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

/* Under lua_pcall: fills cands for the word (lightuserdata 1). */
static int collect(lua_State *L) {
  const char *text = lua_touserdata(L, 1);
  const char *sep = strpbrk(text, ".:"), *last = NULL, *seg = text;
  int seen;
  for (const char *p = sep; p != NULL; p = strpbrk(p + 1, ".:"))
    last = p;
  lua_settop(L, 0);
  lua_newtable(L);
  seen = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (last == NULL) {
    size_t n = strlen(text);
    for (int i = 0; keywords[i] != NULL; i++)
      if (strncmp(keywords[i], text, n) == 0)
        add_cand("", 0, keywords[i], LUA_TNIL);
    offer(L, seen, "", 0, text, n, 0);
    return 0;
  }
  /* Resolve a.b.c of "a.b.c:part"; only the last separator may be ':'. */
  while (seg < last) {
    size_t n = strcspn(seg, ".:");
    if (!is_ident(seg, n) || (seg[n] == ':' && seg + n != last))
      return 0;
    field(L, seg, n);
    if (lua_isnil(L, -1))
      return 0;
    seg += n + 1;
  }
  offer(L, seen, text, (size_t)(last - text) + 1, last + 1, strlen(last + 1),
        *last == ':');
  return 0;
}

static char *generator(const char *text, int state) {
  (void)text;
  if (state == 0)
    cands.next = 0;
  if (cands.next >= cands.n)
    return NULL;
  return strdup(cands.items[cands.next++]);
}

static char **complete(const char *text, int start, int end) {
  lua_State *L = active->L;
  int top = lua_gettop(L);
  (void)start, (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  clear_cands();
  lua_pushcfunction(L, collect);
  lua_pushlightuserdata(L, (void *)text);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    clear_cands();
  lua_settop(L, top);
  /* One candidate: what is likely typed next, "vm:start(", "orrery.". */
  rl_completion_append_character = '\0';
  if (cands.n == 1)
    rl_completion_append_character = cands.single_type == LUA_TFUNCTION ? '('
                                     : cands.single_type == LUA_TTABLE  ? '.'
                                                                        : ' ';
  if (cands.n == 0)
    return NULL;
  return rl_completion_matches(text, generator);
}

void orr_repl_complete_init(orr_repl *r) {
  active = r;
  /* '.' and ':' are not word breaks, so "vm:add_" reaches us whole. */
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,)+-*/%^~#[]";
  rl_attempted_completion_function = complete;
}
