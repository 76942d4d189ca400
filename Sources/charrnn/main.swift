@preconcurrency import Glibc

BLASSetup.ensureFastKernel()
setvbuf(stdout, nil, _IOLBF, 0)
CharRNNCommand.main()
