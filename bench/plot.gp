# Sync time against the number of services (2 endpoints each), per backend
# and for the baselines measured in the same runs: `gnuplot -e "out='F'"
# bench/plot.gp` with bench/out/nft_plot.dat (and, when the IPVS run in
# tests/vm produced it, bench/out/ipvs_plot.dat). bench/run.sh calls it.
if (!exists("out")) out = "bench/out/sync.png"
if (!exists("dir")) dir = "bench/out"
set terminal pngcairo size 900,560 font ",11"
set output out
set title "Cold sync (whole ruleset, one transaction) vs. the same rules loaded by the standard tools"
set xlabel "services (2 endpoints each)"
set ylabel "seconds"
set logscale xy
set xrange [500:200000]
set grid
set key top left
nft = dir."/nft_plot.dat"
ipvs = dir."/ipvs_plot.dat"
have_ipvs = system("test -s ".ipvs." && grep -qv '^#' ".ipvs." && echo 1 || echo 0") + 0
if (have_ipvs) {
    plot nft using 1:2 with linespoints lw 2 title "nlproxy, nftables", \
         nft using 1:3 with linespoints dt 2 title "nft -f of the same script", \
         ipvs using 1:2 with linespoints lw 2 title "nlproxy, IPVS (emulated VM)", \
         ipvs using 1:3 with linespoints dt 2 title "ipvsadm-restore (emulated VM)"
} else {
    plot nft using 1:2 with linespoints lw 2 title "nlproxy, nftables", \
         nft using 1:3 with linespoints dt 2 title "nft -f of the same script"
}
