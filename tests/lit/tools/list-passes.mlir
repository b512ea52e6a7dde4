// RUN: qcc-opt --list-passes | filecheck %s
// CHECK: canonicalize {{ +}}Drop identity/dropout
