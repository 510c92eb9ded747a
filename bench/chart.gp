# Throughput by threads, one panel per backend, from report.py's
# threads.dat: gnuplot -e "data='...'; out='...'; panels='local etcd dynamodb'" bench/chart.gp
# (panels: the backends in threads.dat, in its order).
if (!exists("panels")) panels = "local etcd"
n = words(panels)
set terminal pngcairo size 600*n,560 font "sans,10"
set output out
set multiplot layout 1,n title "TetherDB: throughput by threads (100-byte values); solid: library via C ABI, dashed: engine used directly"
set logscale y
set format y "%.0s%c"
set xlabel "threads"
set ylabel "operations per second (log)"
set xtics (1, 2, 4, 8)
set logscale x 2
set xrange [0.8:10]
set grid ytics mytics xtics
set key below font ",9" maxrows 2
title_of(b) = b eq "local" ? "local (sled)" : b eq "etcd" ? "etcd (etcd-client, on loopback)" : b eq "dynamodb" ? "dynamodb (aws-sdk-dynamodb, moto on loopback)" : b
do for [i=1:n] {
  set title title_of(word(panels, i))
  plot data index (i-1) using 1:2 with linespoints lw 2 lc rgb "#1f77b4" pt 7 title "direct write", \
       data index (i-1) using 1:3 with linespoints lw 2 lc rgb "#1f77b4" dt 2 pt 6 title "direct write, engine", \
       data index (i-1) using 1:4 with linespoints lw 2 lc rgb "#d62728" pt 5 title "queued write + flush", \
       data index (i-1) using 1:5 with linespoints lw 2 lc rgb "#d62728" dt 2 pt 4 title "batched write, engine", \
       data index (i-1) using 1:6 with linespoints lw 2 lc rgb "#2ca02c" pt 9 title "read", \
       data index (i-1) using 1:7 with linespoints lw 2 lc rgb "#2ca02c" dt 2 pt 8 title "read, engine"
}
unset multiplot
