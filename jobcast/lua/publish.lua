-- ARGV[5..]: id, type, new state, head, tail, fence, ready ms, then snapshot field/value pairs.
return publish(ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), rest(12))
