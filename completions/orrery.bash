# bash completion for orrery(1): commands, each command's options, recipes
# (*.lua) where a recipe goes, directories for --allow-write, VM ids (the
# runtime root's directories) for console, stop and kill. Installed as
# PREFIX/share/bash-completion/completions/orrery.

# _orrery_files: recipe files and directories below the current word.
_orrery_files() {
  compopt -o filenames 2>/dev/null
  local IFS=$'\n'
  COMPREPLY+=($(compgen -d -- "$1") $(compgen -f -X '!*.lua' -- "$1"))
}

_orrery() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local commands="run plan repl doctor template ps console stop kill version help"
  local runopts="-e -l -i -q --quiet -v --verbose --log-file= --events= --sandbox --allow-write= -h --help"
  local i cmd="" recipe=""
  COMPREPLY=()

  # The word before an option's argument: -e CHUNK, -l MOD, --allow-write DIR
  # (bash splits --allow-write=DIR at the '=').
  case $prev in
    -e|-l|--namespace|--source) return 0 ;;
    --allow-write) compopt -o dirnames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")); return 0 ;;
    --log-file|--events) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    =)
      case ${COMP_WORDS[COMP_CWORD-2]} in
        --allow-write)
          compopt -o dirnames 2>/dev/null
          COMPREPLY=($(compgen -d -- "$cur"))
          return 0 ;;
        --log-file|--events)
          compopt -o filenames 2>/dev/null
          COMPREPLY=($(compgen -f -- "$cur"))
          return 0 ;;
      esac ;;
  esac

  # The command (or, lua5.4 style, the recipe) and whether a recipe came.
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -e|-l) ((i++)) ;;
      =|--allow-write|--backend|--namespace|--source|--log-file|--events) ;;
      -*) ;;
      *)
        if [[ -z $cmd ]]; then
          cmd=${COMP_WORDS[i]}
          case $cmd in run|plan|repl|doctor|template|ps|console|stop|kill|version|help) ;; *) recipe=$cmd ;; esac
        elif [[ ($cmd == run || $cmd == plan) && -z $recipe ]]; then
          recipe=${COMP_WORDS[i]}
        fi ;;
    esac
  done

  # After the recipe, the words are its own: offer files.
  if [[ -n $recipe ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
    return 0
  fi
  case $cmd in
    "")
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$runopts --version" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        _orrery_files "$cur"
      fi ;;
    run)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$runopts" -- "$cur"))
      else
        _orrery_files "$cur"
      fi ;;
    plan)
      if [[ $prev == --backend || ($prev == = && ${COMP_WORDS[COMP_CWORD-2]} == --backend) ]]; then
        COMPREPLY=($(compgen -W "plan kubevirt" -- "$cur"))
      elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--compact --backend= --namespace= --source= -h --help" -- "$cur"))
      else
        _orrery_files "$cur"
      fi ;;
    doctor) COMPREPLY=($(compgen -W "--json --refresh -h --help" -- "$cur")) ;;
    version) COMPREPLY=($(compgen -W "--json -h --help" -- "$cur")) ;;
    template)
      # ls or rm, then ls's --json or rm's --all and the cached keys.
      if [[ $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "ls rm -h --help" -- "$cur"))
      elif [[ ${COMP_WORDS[2]} == ls ]]; then
        COMPREPLY=($(compgen -W "--json" -- "$cur"))
      elif [[ ${COMP_WORDS[2]} == rm ]]; then
        COMPREPLY=($(compgen -W "--all $(orrery template ls 2>/dev/null | awk 'NR > 1 {print $1}')" -- "$cur"))
      fi ;;
    repl) COMPREPLY=($(compgen -W "-h --help" -- "$cur")) ;;
    help) [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "run plan repl doctor template ps console stop kill version" -- "$cur")) ;;
    ps) COMPREPLY=($(compgen -W "--json -h --help" -- "$cur")) ;;
    console|stop|kill)
      if [[ $cur == -* ]]; then
        [[ $cmd == stop ]] && COMPREPLY=($(compgen -W "--timeout= -h --help" -- "$cur")) ||
          COMPREPLY=($(compgen -W "-h --help" -- "$cur"))
      else
        # The VMs under the runtime root.
        local root=${ORRERY_RUNTIME_DIR:-}
        [[ $root == /* ]] || root=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/orrery}
        [[ -n $root ]] || { [[ $EUID -eq 0 ]] && root=/run/orrery || root=/tmp/orrery-$EUID; }
        local IFS=$'\n'
        COMPREPLY=($(cd "$root" 2>/dev/null && compgen -d -- "$cur"))
      fi ;;
  esac
  # "--allow-write=" takes its directory right after the '='.
  [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
  return 0
}
complete -F _orrery orrery
