# Sourced by scripts/*: finds a Python >= 3.12 and prepares .venv with the given requirements.
# Django 6.1 needs 3.12+, while many machines' default python3 is older.

find_python() {
    local candidates=("${PYTHON:-}" python3.13 python3.12 python3.14 python3)
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | sort -rV); do
            candidates+=("$(pyenv root)/versions/$v/bin/python")
        done
    fi
    for dir in /usr/local/bin /usr/bin "$HOME/.pyenv/versions"/3.1[2-9]*/bin; do
        candidates+=("$dir/python3.13" "$dir/python3.12" "$dir/python3")
    done
    for py in "${candidates[@]}"; do
        [ -n "$py" ] || continue
        command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
        if "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    # usage: ensure_venv requirements-file
    local req="$1"
    local stamp=".venv/.installed-$(basename "$req")"
    if [ ! -x .venv/bin/python ]; then
        local py
        py=$(find_python) || { echo "Python 3.12 or newer is needed (set PYTHON=/path/to/python3.12)." >&2; exit 1; }
        echo "==> creating .venv with $("$py" --version)"
        "$py" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
        echo "==> installing $req"
        .venv/bin/python -m pip install --quiet -r "$req"
        touch "$stamp"
    fi
}
