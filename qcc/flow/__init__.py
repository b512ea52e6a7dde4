"""Jobs that compose the passes, the runtime and the exporters (they sit with the
tools in the layering): the whole post-training quantization job (`quantize`, what
`qcc quantize` and `qcc.quantize` run) and the AMCT-style step API over it (`amct`,
`amct_pytorch`)."""
