# The machine a report was measured on, for scripts/perf-report.sh and
# scripts/reliability-report.sh (sourced, not run). After
# `machine_info "$ROOT"` these are set:
#   cpu_model   the CPU's model name ("unknown" where /proc/cpuinfo has none)
#   cpu_flags   its flags line; `has_flag avx2` prints yes or no
#   cpus        online CPUs
#   memory      total memory, "23.5 GiB"
#   kernel      `uname -sr`
#   commit      the short commit of the checkout at $1, with
#               " (with uncommitted changes)" when its work tree differs
# A report names its machine and commit so a figure can be traced back to
# where it was measured.

machine_info() {
  local root="$1"
  cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  cpu_model="${cpu_model:-unknown}"
  cpu_flags="$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  cpus="$(nproc)"
  memory="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  kernel="$(uname -sr)"
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then
    commit="$commit (with uncommitted changes)"
  fi
}

has_flag() { [[ " $cpu_flags " == *" $1 "* ]] && echo yes || echo no; }
