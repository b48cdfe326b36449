module streamchat/bench

go 1.19
