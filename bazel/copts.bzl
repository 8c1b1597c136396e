"""Compiler options of the C engine and its tools (C11, warnings as errors)."""

C_OPTS = [
    "-std=c11",
    "-D_POSIX_C_SOURCE=200809L",
    "-Wall",
    "-Wextra",
    "-Wpedantic",
    "-Werror",
    "-Wno-unused-parameter",
]
